"""Failures during a call end that call cleanly and lose nothing already recorded."""

import errno

import pytest

from linebox.calls.engine import Hangup
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


class _Pending:
    """The store's PendingMessage as the Message rule sees it."""

    def __init__(self, samples):
        self.samples = samples
        self.done = None

    def finish(self, keep):
        self.done = ("saved", keep)

    def discard(self, reason):
        self.done = ("discarded", reason)


@pytest.mark.parametrize("phase,samples,exc,outcome", [
    ("beep", 0, Hangup, ("discarded", "hangup")),                # gone during the beep
    ("beep", 0, GeneratorExit, ("discarded", "hangup")),
    ("taking", 8000, GeneratorExit, ("saved", None)),            # cut short: keep the disk's
    ("taking", 7999, GeneratorExit, ("discarded", "line_fault")),
    ("taken", 16000, Hangup, ("saved", 12000)),                  # hung up in the review: sent
    ("taken", 16000, None, None),                                # left normally: undecided here
])
def test_the_one_rule_for_a_message_left_undecided(phase, samples, exc, outcome):
    from linebox.calls.flows import Message, Take

    pending = _Pending(samples)
    msg = Message(pending)
    msg.phase = phase
    msg.take = Take(0.0)
    msg.take.voiced = bytearray([1] * 60 + [0] * 40)      # 1.2 s of voice, then quiet
    try:
        with msg:
            if exc is not None:
                raise exc("bye") if exc is Hangup else exc()
    except (Hangup, GeneratorExit):
        pass
    assert pending.done == outcome     # 12000: the 1.2 s of voice and 0.3 s after it
