"""One crawl at a time per archive: an exclusive lock beside the database file.

``<archive>.lock`` is locked with ``flock`` for the whole crawl; the kernel
drops the lock when the process ends, however it ends, so a crashed crawl
never leaves a stale lock behind. The file records the holder's pid.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path


class ArchiveLocked(RuntimeError):
    pass


@contextmanager
def archive_lock(db_path: Path):
    lock_path = Path(f"{db_path}.lock")
    handle = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise ArchiveLocked(f"another crawl is writing {db_path} (pid {holder}); try again when it ends") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()
