"""The SMTP spool: a message is acknowledged once it is safe on disk, imported right after.

The whole decision costs several milliseconds per message, and an SMTP client
waits for each 250, so answering only after it caps every sender at the
import rate. Like an MTA's queue, with `smtp.spool = true` the listener
instead writes the message to
`data_dir/spool/tmp`, fsyncs it, renames it into `data_dir/spool/new` and
answers 250; an importer passes each file through `accept_message` and
deletes it only after that import is committed.

Any process may import a spooled file: each is held under an exclusive
`flock` while its import runs, so the daemon's importer and a command that
drains the spool before reading (`ticket show` right after a 250 sees the
ticket) never import the same file at once, and a lock left by a killed
process is released by the kernel. A crash after the import's commit but
before the file's removal imports it again on the next pass, which the
pipeline logs as `duplicate`: nothing is lost and nothing is imported twice.
A power cut can undo the rename but not the fsynced data: `sweep` moves
complete files found in `tmp` (their envelope line gives their size) into
`new`, at the cost of a `duplicate` entry when the client had not yet got
its 250 and sent the message again.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from core.intake import Envelope
from mailgate.accept import accept_message
from mailgate.app import App

STALE_TMP_SECONDS = 600
_counter = itertools.count()


class Spool:
    """The spool folder of one data directory."""

    def __init__(self, data_dir: str | Path) -> None:
        self.folder = Path(data_dir) / "spool"
        self.new = self.folder / "new"
        self.tmp = self.folder / "tmp"
        self._made = False

    def put(self, raw: bytes, envelope: Envelope) -> str:
        """Write one message durably; its spool name once it is safe."""
        self._make_folders()
        name = f"{time.time_ns():020d}.{os.getpid()}.{next(_counter)}"
        head: dict[str, object] = {
            "transport": envelope.transport,
            "sender": envelope.sender,
            "recipients": list(envelope.recipients),
            "size": len(raw),
        }
        tmp = self.tmp / name
        try:
            with tmp.open("wb") as handle:
                handle.write(json.dumps(head).encode() + b"\n")
                handle.write(raw)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.new / name)
        except OSError:
            tmp.unlink(missing_ok=True)  # never acknowledged: the client keeps the message
            raise
        return name

    def _make_folders(self) -> None:
        if not self._made:
            for folder in (self.tmp, self.new):
                folder.mkdir(parents=True, exist_ok=True)
            self._made = True

    def pending(self) -> list[Path]:
        """Spooled files, oldest first."""
        try:
            return sorted(self.new.iterdir())
        except FileNotFoundError:
            return []

    def import_file(self, app: App, path: Path) -> bool:
        """Import one file unless another process holds it; False when it is held.

        `TransientError` (database unavailable) leaves the file for a later pass.
        """
        with _locked(path) as handle:
            if handle is None:
                return False
            if os.fstat(handle.fileno()).st_nlink == 0:
                return True  # imported and removed by another process meanwhile
            envelope, raw = _read(handle.read())
            accept_message(app, raw, envelope)
            path.unlink(missing_ok=True)
            return True

    def drain(
        self, app: App, wait_seconds: float = 0.0, on_import: Callable[[], None] | None = None
    ) -> int:
        """Import every spooled file; files another process is importing are waited for
        up to `wait_seconds` (0: skipped). `on_import` runs after each import.
        Returns how many this call imported."""
        deadline = time.monotonic() + wait_seconds
        imported = 0
        while True:
            held = 0
            for path in self.pending():
                if self.import_file(app, path):
                    imported += 1
                    if on_import is not None:
                        on_import()
                else:
                    held += 1
            if not held or time.monotonic() >= deadline:
                return imported
            time.sleep(0.02)

    def sweep(self) -> None:
        """Before listening: complete files left in `tmp` go to `new`; partial ones,
        whose writer died before any 250, are removed once stale."""
        cutoff = time.time() - STALE_TMP_SECONDS
        self._make_folders()
        with contextlib.suppress(FileNotFoundError):
            for path in self.tmp.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    if _complete(path.read_bytes()):
                        os.replace(path, self.new / path.name)
                    elif path.stat().st_mtime < cutoff:
                        path.unlink()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[BinaryIO | None]:
    """The open file under an exclusive lock; None when another process holds it or
    it is already gone."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        yield None
        return
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield handle


def _read(data: bytes) -> tuple[Envelope, bytes]:
    """The envelope line and the raw message; an unreadable envelope line keeps the
    whole file as the message, which then lands in the import log."""
    fields, raw = _split(data)
    try:
        envelope = Envelope(
            str(fields["transport"]),
            fields["sender"] if isinstance(fields["sender"], str) else None,
            tuple(str(r) for r in fields["recipients"]),
        )
    except (KeyError, TypeError):
        return Envelope("smtp"), data
    return envelope, raw


def _complete(data: bytes) -> bool:
    """Whether a file holds all the message its envelope line announces."""
    fields, raw = _split(data)
    return fields.get("size") == len(raw)


def _split(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The envelope line's fields ({} when unreadable) and the message after it."""
    head, _, raw = data.partition(b"\n")
    try:
        fields = json.loads(head)
    except ValueError:
        return {}, raw
    return (fields, raw) if isinstance(fields, dict) else ({}, raw)
