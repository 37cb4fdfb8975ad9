"""Which saved messages were announced (e-mail queued, MQTT event in the outbox).

A message is saved (database write), then announced on the bus (the mailer and the MQTT
reporter queue durably inside that publish). A kill between the two used to lose the
mail and the event. Now every record is saved with ``notified: false`` and its id is
appended to ``data_dir/notified`` once the bus has taken it; at the next start the
store announces every record still false whose id is not in this journal, marks the
rest, and empties the journal. The journal lives outside ``db.json`` on purpose: when
the database comes back from its backup (one write behind), the journal still says
the last message was announced, so it is not mailed a second time.
"""

import logging
import os
from pathlib import Path

from linebox.fileio import fsync_dir, write_file_atomic
from linebox.voicemail.storebase import is_id

log = logging.getLogger(__name__)


class NotifiedJournal:
    """An append-only file of message ids, one a line, fsynced at each append."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def add(self, message_id: str) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, f"{message_id}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def ids(self) -> set[str]:
        """The ids in the journal; a torn last line (a power cut) is ignored."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return set()
        except OSError as e:
            log.warning("%s unreadable (%s): every unmarked message is announced again",
                        self.path, e.strerror or e)
            return set()
        return {x for x in raw.decode("ascii", "replace").split("\n") if is_id(x)}

    def clear(self) -> None:
        if self.path.exists():
            write_file_atomic(self.path, b"")
            fsync_dir(self.path.parent)
