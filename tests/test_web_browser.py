"""The portal in a real browser: Debian's headless Chromium driven by Selenium, against
the real firmware on simulated lines (one scenario run before, one live at real time)."""

import shutil
import threading
import time
from pathlib import Path

import pytest

from linebox.config import WebConfig
from linebox.sim.runner import build, run
from linebox.sim.scenario import load_scenario
from linebox.web.server import WebServer
from simkit import PIN, Sim, speech_wav
from test_web_api import _wav

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                                reason="needs Debian's chromium and chromium-driver (scripts/ensure-deps)")

BEFORE = """
[[call]]
line = 1
at = 1.0
caller = {{ number = "5551234567", name = "JOHN DOE" }}
steps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }} ]
"""
LIVE = """
[[call]]
line = 1
at = {at}
caller = {{ number = "5552223333", name = "LIVE CALLER" }}
steps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }} ]
"""


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.set_window_size(1280, 900)
    driver.downloads = downloads
    yield driver
    driver.quit()
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def _wait(fn, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = fn()
        except Exception:  # noqa: BLE001 - the page may be reloading
            got = None
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_owner_follows_a_live_call_then_plays_downloads_deletes_restores_and_sets_a_greeting(
        tmp_path, speech_files, browser):
    from selenium.webdriver.common.by import By

    sim = Sim(tmp_path, rings=2)
    voice = speech_wav(tmp_path, speech_files[0], 3.0)
    sim.run(BEFORE.format(voice=voice), start=time.time() - 3600)      # a message, an hour ago

    # The live part: a call arrives at real time while the browser watches.
    app, exchange, transcript = build(sim.config, load_scenario(sim.write_scenario(LIVE.format(at=6.0, voice=voice))),
                                      None, True, clock_start=time.time())
    lock = threading.RLock()
    server = WebServer(app, lock, WebConfig(), app.calllog, host="127.0.0.1", port=0)
    server.start()
    loop = threading.Thread(target=run, args=(app, exchange, transcript), kwargs={"lock": lock, "realtime": True})
    loop.start()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    try:
        b = browser
        b.get(server.url + "login")
        assert b.find_element(By.CSS_SELECTOR, "[data-insecure]").is_displayed()
        b.save_screenshot(str(shots / "login-desktop.png"))
        b.find_element(By.NAME, "box").send_keys("100")
        b.find_element(By.NAME, "pin").send_keys(PIN)
        b.find_element(By.CSS_SELECTOR, "#login-box button").click()
        _wait(lambda: b.find_elements(By.ID, "line-1"), what="the dashboard")

        def state():       # the row is re-rendered on each event: ask the page, never a stale element
            return b.execute_script("const e = document.querySelector('#line-1 .state'); return e && e.textContent;")
        seen = [state()]
        assert seen == ["idle"]
        deadline = time.monotonic() + 60
        while "recording" not in seen and time.monotonic() < deadline:
            s = state()
            if s != seen[-1]:
                seen.append(s)
                if s == "ringing":
                    b.save_screenshot(str(shots / "dashboard-ringing.png"))
            time.sleep(0.05)
        assert seen[:2] == ["idle", "ringing"] and "recording" in seen, seen
        b.save_screenshot(str(shots / "dashboard-recording.png"))
        assert "LIVE CALLER" in b.execute_script("return document.querySelector('#line-1 .caller').textContent")
        loop.join(timeout=90)
        assert not loop.is_alive()
        _wait(lambda: "idle" == state(), what="the line back to idle")
        _wait(lambda: "2 new" in b.find_element(By.ID, "box-100").text, what="the new count")
        _wait(lambda: "5552223333" in b.find_element(By.ID, "calls").text, what="the call log")
        b.save_screenshot(str(shots / "dashboard-desktop.png"))

        with lock:
            old = [m for m in app.store.messages("100") if m["caller_number"] == "5551234567"][0]
        mid = old["id"]
        b.get(server.url + "box/100")
        li = b.find_element(By.ID, f"msg-{mid}")
        duration = b.execute_script(
            "const a = arguments[0].querySelector('audio'); a.preload = 'auto'; a.load();"
            "await new Promise(r => a.addEventListener('loadedmetadata', r, {once: true}));"
            "await a.play(); await new Promise(r => setTimeout(r, 300));"
            "return [a.duration, a.currentTime, a.paused, a.error];", li)
        assert abs(duration[0] - old["seconds"]) < 0.05 and duration[1] > 0 and duration[3] is None, duration
        b.save_screenshot(str(shots / "box-desktop.png"))

        li.find_element(By.LINK_TEXT, "Download").click()
        got = _wait(lambda: [p for p in b.downloads.iterdir() if p.suffix == ".wav"], what="the download")
        assert got[0].name.startswith("box100_") and "5551234567_JOHN-DOE" in got[0].name
        assert got[0].read_bytes()[:4] == b"RIFF"

        b.find_element(By.CSS_SELECTOR, f"#msg-{mid} [data-act=delete]").click()
        _wait(lambda: b.find_elements(By.CSS_SELECTOR, f"#trash #msg-{mid}"), what="the message in the trash")
        b.find_element(By.CSS_SELECTOR, f"#trash #msg-{mid} [data-act=undelete]").click()
        _wait(lambda: b.find_elements(By.CSS_SELECTOR, f"#messages #msg-{mid}"), what="the message restored")
        with lock:
            assert app.store.get(mid)["state"] == "new"

        greeting = tmp_path / "greeting.wav"
        greeting.write_bytes(_wav(48000, 2, 2.0))
        b.find_element(By.CSS_SELECTOR, "#greeting-upload input[type=file]").send_keys(str(greeting))
        b.find_element(By.CSS_SELECTOR, "#greeting-upload button").click()
        _wait(lambda: "your own greeting" in b.find_element(By.ID, "greeting-kind").text, what="the greeting")
        with lock:
            assert app.store.greeting_path("100") is not None

        # The temporary greeting: uploaded, shown, playable, then removed.
        temp = tmp_path / "away.wav"
        temp.write_bytes(_wav(22050, 1, 1.5))
        b.find_element(By.CSS_SELECTOR, "#temporary input[type=file]").send_keys(str(temp))
        b.find_element(By.CSS_SELECTOR, "#temporary form button").click()
        _wait(lambda: b.find_element(By.ID, "temporary-state").text == "on", what="the temporary greeting")
        assert b.find_element(By.ID, "greeting-overridden").is_displayed()
        with lock:
            assert app.store.greeting_path("100", "temporary") is not None
            assert app.store.greeting_path("100") is not None          # the own greeting stays
        seconds = b.execute_script(
            "const a = document.querySelector('#temporary audio'); a.preload = 'auto'; a.load();"
            "await new Promise(r => a.addEventListener('loadedmetadata', r, {once: true}));"
            "return a.duration;")
        assert abs(seconds - 1.5) < 0.05, seconds
        b.save_screenshot(str(shots / "box-temporary.png"))
        b.find_element(By.CSS_SELECTOR, "#temporary .kind-clear").click()
        _wait(lambda: b.find_element(By.ID, "temporary-state").text == "none", what="the temporary greeting removed")
        assert not b.find_elements(By.ID, "greeting-overridden")
        with lock:
            assert app.store.greeting_path("100", "temporary") is None
        name = tmp_path / "name.wav"
        name.write_bytes(_wav(8000, 1, 1.0))
        b.find_element(By.CSS_SELECTOR, "#name input[type=file]").send_keys(str(name))
        b.find_element(By.CSS_SELECTOR, "#name form button").click()
        _wait(lambda: b.find_element(By.ID, "name-state").text == "recorded", what="the name recording")
        with lock:
            assert app.store.greeting_path("100", "name") is not None

        b.set_window_size(390, 844)                                   # a phone
        b.get(server.url + "box/100")
        b.save_screenshot(str(shots / "box-phone.png"))
        width = b.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, "no sideways scrolling on a phone"
        b.get(server.url)
        b.save_screenshot(str(shots / "dashboard-phone.png"))
        print(f"screenshots in {shots}")
    finally:
        if loop.is_alive():
            loop.join(timeout=90)
        server.stop()
        app.close()


def test_admin_changes_a_line_and_an_owner_email_on_the_settings_page(tmp_path, speech_files, browser):
    from selenium.webdriver.common.by import By

    from test_web_api import ADMIN_PASSWORD, Portal

    p = Portal(tmp_path, speech_files)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    try:
        b = browser
        b.get(p.base + "/login")
        b.find_element(By.CSS_SELECTOR, "details summary").click()
        b.find_element(By.NAME, "password").send_keys(ADMIN_PASSWORD)
        b.find_element(By.CSS_SELECTOR, "#login-admin button").click()
        _wait(lambda: b.find_elements(By.ID, "line-2"), what="the dashboard")
        b.save_screenshot(str(shots / "dashboard-admin.png"))
        b.get(p.base + "/settings")
        form = b.find_element(By.CSS_SELECTOR, 'form[data-url="/api/v1/lines/1/settings"]')
        rings = form.find_element(By.NAME, "rings")
        rings.clear()
        rings.send_keys("5")
        form.find_element(By.CSS_SELECTOR, "button").click()
        _wait(lambda: b.find_element(By.ID, "notice").text == "Saved.", what="saved")
        assert p.app.settings.rings(1) == 5
        form = b.find_element(By.CSS_SELECTOR, 'form[data-url="/api/v1/lines/1/settings"]')
        form.find_element(By.NAME, "block").send_keys("5551230000\n1900*\n")
        form.find_element(By.CSS_SELECTOR, "button").click()
        _wait(lambda: [r.block for r in p.app.runners if r.id == 1] == [("5551230000", "1900*")],
              what="the block list set")
        assert 'block = ["5551230000", "1900*"]' in p.sim.config_path.read_text()
        b.save_screenshot(str(shots / "settings-block.png"))
        box = b.find_element(By.CSS_SELECTOR, 'form[data-url="/api/v1/boxes/101/settings"]')
        box.find_element(By.NAME, "email").send_keys("workshop@example.com")
        box.find_element(By.CSS_SELECTOR, "button").click()
        _wait(lambda: p.app.config.boxes["101"].email == ("workshop@example.com",), what="the e-mail set")
        box.find_element(By.NAME, "email_on_new").click()            # no [email] table: refused
        box.find_element(By.CSS_SELECTOR, "button").click()
        _wait(lambda: "email_on_new" in b.find_element(By.ID, "notice").text, what="the refusal")
        b.save_screenshot(str(shots / "settings-refused.png"))
        assert p.app.config.boxes["101"].email_on_new is False
        assert 'email = "workshop@example.com"' in p.sim.config_path.read_text()

        # An IP phone's call arrives in the dashboard's call log, live, named by its extension.
        b.get(p.base + "/")
        _wait(lambda: b.find_elements(By.ID, "line-2"), what="the dashboard")
        time.sleep(1.0)                                               # its event stream is open
        bus = p.app.bus
        with p.lock:
            bus.publish({"event": "sip_call", "caller_number": "201", "caller_name": "Front desk",
                         "dialled": "100", "line": None, "extension": "201"})
            bus.publish({"event": "onhook", "line": None, "extension": "201", "t": 4.0})
        _wait(lambda: "ext 201" in b.find_element(By.ID, "calls").text, what="the phone's call")
        b.save_screenshot(str(shots / "dashboard-extension-call.png"))

        # The administrator's login, locked after wrong passwords, says so.
        b.find_element(By.ID, "logout").click()
        _wait(lambda: b.find_elements(By.NAME, "box"), what="the login page")
        import json as json_
        (p.sim.data / "admin-logins.json").write_text(json_.dumps(
            {"failures": [], "locked_until": time.time() + 600, "locks": 1}))
        b.find_element(By.CSS_SELECTOR, "details summary").click()
        b.find_element(By.NAME, "password").send_keys(ADMIN_PASSWORD)
        b.find_element(By.CSS_SELECTOR, "#login-admin button").click()
        _wait(lambda: "locked" in b.find_element(By.ID, "login-error").text, what="the locked notice")
        b.save_screenshot(str(shots / "login-admin-locked.png"))
    finally:
        p.close()
