"""The HTML pages: rendered on the server from the same data the API answers with; the
script (static/portal.js) sends every change through the API and follows live events."""

from datetime import datetime

from flask import g, redirect, render_template

from linebox.config import LANGUAGES
from linebox.web.portal import Refusal, checked_box, portal

OUTCOMES = {"message": "message in box {box}", "hung_up": "hung up before the beep (box {box})",
            "missed": "missed", "login": "owner login to box {box}", "blocked": "blocked",
            "phone": "answered by extension {extension}"}


def _when(iso) -> str:
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return "?"


def _duration(seconds) -> str:
    if not isinstance(seconds, int | float):
        return "–"
    s = round(seconds)
    return f"{s // 60}:{s % 60:02d}"


def _outcome(call: dict) -> str:
    text = OUTCOMES.get(call.get("outcome"), call.get("outcome") or "?")
    if call.get("outcome") == "hung_up" and call.get("box") is None:
        text = "hung up"
    return text.format(box=call.get("box"), extension=call.get("extension"))


def register(app) -> None:
    app.add_template_filter(_when, "when")
    app.add_template_filter(_duration, "duration")
    app.add_template_filter(_outcome, "outcome")

    @app.context_processor
    def _common():
        p = portal()
        s = g.get("session")
        boxes = [b for b in p.box_numbers() if s is not None and s.may_see(b)]
        return {"session": s, "device_name": p.config.device.name, "nav_boxes": boxes}

    def page(name, **ctx):
        return render_template(name, **ctx)

    @app.get("/login")
    def login_page():
        if g.session is not None:
            return redirect("/")
        return page("login.html", insecure=not app.extensions["tls"])

    @app.get("/")
    def dashboard():
        s = g.session
        if s is None:
            return redirect("/login")
        p = portal()
        from linebox.web.api import visible_calls
        return page("dashboard.html",
                    lines=[ln for ln in p.lines() if s.admin or ln["route"] == s.box],
                    boxes=[p.box_summary(b) for b in p.box_numbers() if s.may_see(b)],
                    calls=visible_calls(p, s)[:200])

    @app.get("/box/<number>")
    def box_page(number):
        if g.session is None:
            return redirect("/login")
        try:
            box = checked_box(number)
        except Refusal as e:
            return page_error(e)
        p = portal()
        msgs = p.messages(box)
        msgs.reverse()                       # newest first
        has = p.greetings(box)
        return page("box.html", box=p.config.boxes[box], counts=p.box_summary(box),
                    live=[m for m in msgs if m["state"] != "trash"],
                    trash=[m for m in msgs if m["state"] == "trash"],
                    own_greeting=has["unavailable"], temporary_greeting=has["temporary"],
                    name_recording=has["name"])

    @app.get("/settings")
    def settings_page():
        from linebox.web import settings
        s = g.session
        if s is None:
            return redirect("/login")
        return page("settings.html", view=settings.view(portal(), s), languages=LANGUAGES)

    def page_error(e: Refusal):
        return render_template("error.html", status=e.status, error=e.error), e.status
