"""Failures during a call end that call cleanly and lose nothing already recorded."""

import errno

from linebox.voicemail import store as store_mod
from simkit import Sim, of, speech_wav


def _call(steps: str, when: str = "at = 1") -> str:
    return f'[[call]]\nline = 1\n{when}\ncaller = {{ number = "5551234567" }}\nsteps = [\n{steps}\n]\n'


def test_a_full_disk_mid_recording_keeps_what_was_written_and_the_line_goes_on(tmp_path, speech_files, monkeypatch):
    sim = Sim(tmp_path)
    voice = speech_wav(tmp_path, speech_files[0], 8.0)
    real_write = store_mod.PendingMessage.write
    written = {"n": 0}

    def write(self, samples):
        written["n"] += 1
        if written["n"] > 200:             # 4 s into the message the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, samples)

    monkeypatch.setattr(store_mod.PendingMessage, "write", write)
    steps = f'{{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }}'
    ev = sim.run(_call(steps) + _call('{ wait = "beep" }, { hangup = "busy" }', "after = 5"))
    assert of(ev, "record_end")[0]["reason"] == "error"
    (saved,) = of(ev, "message_saved")
    assert 3.5 <= saved["seconds"] <= 4.2
    # The next call is answered as usual.
    assert len(of(ev, "answer")) == 2 and len(of(ev, "onhook")) == 2


def test_a_failing_flow_hangs_up_and_the_next_call_is_answered(tmp_path, monkeypatch, caplog):
    sim = Sim(tmp_path)

    def broken(*a, **kw):
        raise RuntimeError("a bug")

    monkeypatch.setattr("linebox.calls.flows.retract_offer", broken)
    ev = sim.run(_call('{ wait = "answer" }, { wait = { seconds = 2 } }, { hangup = "busy" }')
                 + _call('{ wait = "answer" }, { wait = { seconds = 2 } }, { hangup = "busy" }', "after = 5"))
    assert len(of(ev, "answer")) == 2 and len(of(ev, "onhook")) == 2
    assert "the call flow failed" in caplog.text


def test_a_call_cut_short_mid_recording_keeps_the_message(tmp_path, speech_files):
    """What `linebox run` does on SIGTERM, and the engine on a line fault: the flow is
    closed under the recording, which is saved as it stands."""
    from linebox.sim.runner import build
    from linebox.sim.scenario import load_scenario

    sim = Sim(tmp_path)
    voice = speech_wav(tmp_path, speech_files[1], 8.0)
    path = sim.write_scenario(_call(f'{{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }}'))
    app, exchange, transcript = build(sim.config, load_scenario(path), None, True)
    (runner,) = app.runners
    started = None
    while started is None or exchange.now < started + 3.0:
        runner.step()
        exchange.advance()
        if started is None and of(transcript.events, "record_start"):
            started = exchange.now
    runner.hang_up()
    app.close()
    (saved,) = of(transcript.events, "message_saved")
    assert 2.9 <= saved["seconds"] <= 3.1
    assert sim.messages()[0]["state"] == "new"
