"""One engine per state file: an advisory lock on ``FILE.lock`` that dies with its process."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from ..errors import StoreLockedError


class OwnerLock:
    """Held by the engine that owns a state file; a killed owner's lock is released by the kernel.

    The lock file also records the owner's pid and host for the error message a second engine gets.
    """

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self.db_path = Path(db_path)
        self.path = self.db_path.with_name(self.db_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise StoreLockedError(
                f"{self.db_path} is in use by another Podium engine ({owner}); "
                "stop it first, or use another state file"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid={os.getpid()} host={socket.gethostname()}\n".encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def is_owned(db_path: str | os.PathLike[str]) -> bool:
    """Whether a live engine holds the lock of this state file (used by the CLI)."""
    lock_path = Path(db_path).with_name(Path(db_path).name + ".lock")
    if not lock_path.exists():
        return False
    fd = os.open(lock_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _read_owner(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 200).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "owner unknown"
