"""The bus isolates its subscribers; the journal keeps the text of a logged exception."""

import io
import logging

from linebox import log as logmod
from linebox.events import Bus


def test_a_failing_subscriber_does_not_stop_the_others_or_the_publisher(caplog):
    bus = Bus()
    got = []

    def broken(ev):
        raise RuntimeError("reporter is broken")

    bus.subscribe(got.append)
    bus.subscribe(broken)
    bus.subscribe(lambda ev: got.append(("after", ev["event"])))
    with caplog.at_level(logging.ERROR, "linebox.events"):
        bus.publish({"event": "message_saved"})         # does not raise
    assert got == [{"event": "message_saved"}, ("after", "message_saved")]
    assert "broken" in caplog.text and "message_saved" in caplog.text


def test_the_journal_formatter_keeps_the_exception_text():
    stream = io.StringIO()
    logmod.setup("info", stream)
    try:
        try:
            raise ValueError("the reason\nitself")
        except ValueError:
            logging.getLogger("linebox.x").exception("it failed")
    finally:
        logmod.setup("info")
    lines = stream.getvalue().splitlines()
    # What went wrong on the entry's own line; the traceback follows at the same priority.
    assert lines[0] == "<3>linebox.x: it failed: ValueError: the reason itself"
    assert all(line.startswith("<3>linebox.x: ") for line in lines)
    assert any('raise ValueError("the reason\\nitself")' in line for line in lines)


def test_a_failing_subscriber_does_not_abort_a_store_operation(tmp_path):
    from linebox.config import BoxConfig
    from linebox.voicemail.store import Store

    bus = Bus()
    bus.subscribe(lambda ev: 1 / 0)
    store = Store(tmp_path / "data", {"100": BoxConfig(number="100", name="x", pin_required=False)},
                  bus=bus)
    store.open()
    try:
        from array import array
        p = store.start_recording("100", 1, None, None)
        p.write(array("h", [5] * 16000))
        msg = p.finish()
        store.set_state(msg["id"], "saved")
        assert store.get(msg["id"])["state"] == "saved"
    finally:
        store.close()


def test_a_subscriber_that_cannot_keep_an_event_makes_publish_answer_false(caplog):
    from linebox.events import NotTaken

    bus = Bus()
    got = []

    def full(ev):
        raise NotTaken("mail for message 000001 of box 100 not queued (mailq: Read-only file system)")

    bus.subscribe(full)
    bus.subscribe(got.append)
    assert bus.publish({"event": "box_changed"}) is False
    assert got == [{"event": "box_changed"}]              # the others still get it
    assert caplog.records[-1].levelno == logging.WARNING   # expected, not a crash: no traceback
    assert caplog.records[-1].getMessage() == ("box_changed event not taken: mail for message "
                                               "000001 of box 100 not queued (mailq: Read-only "
                                               "file system)")
    assert caplog.records[-1].exc_info is None
    bus2 = Bus()
    bus2.subscribe(got.append)
    assert bus2.publish({"event": "box_changed"}) is True
