"""One gateway per state directory: an exclusive lock held for as long as the gateway runs.

The record directory holds what a gateway writes and rewrites: the open record file (rotated
at start and as it grows), the incidents, and by default the quarantine's file. Two gateways
on one directory would rotate, cap and overwrite each other's files, so the first holds
`<dir>/warden.lock` (`flock`, exclusive, not blocking) and a second refuses to start, with one
line naming the holder, before it reads or writes anything else there.

`flock` belongs to the open file: the kernel releases it when the process ends, however it
ends, so a lock file left behind by a crash never blocks the next start. Two gateways in one
process (tests) exclude each other too. The file is never deleted (deleting it would let a
second process lock a new file while the first still holds the old one); what it says (the
holder's pid and command) is only for the message.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path

from warden.config.schema import Settings

LOCK_NAME = "warden.lock"


class DirectoryInUse(OSError):
    """Another process holds the directory (the message names it)."""


class StateLock:
    """An exclusive hold on `path` (a lock file), released by `release` or the process's end."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def take(cls, path: Path, guards: str) -> StateLock:
        """Lock `path` (created if need be), or raise `DirectoryInUse` naming the holder.
        `guards`: what the lock protects, for the message (`recorder.dir records`)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise OSError(e.errno, f"{guards}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise DirectoryInUse(f"{guards} is in use by another warden ({holder}); each "
                                 "gateway needs its own") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{describe_process()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.ftruncate(fd, 0)  # before unlocking: a new holder writes its own line
            os.close(fd)


def describe_process() -> str:
    """`pid 4242: warden serve -c warden.yaml, since 2026-11-21 23:44:38`."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program in ("__main__.py", "warden"):  # `python -m warden` or the script
        program = "warden"
    command = " ".join([program, *sys.argv[1:]])
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    return f"pid {os.getpid()}: {command}, since {since}"


def hold_state(settings: Settings) -> list[StateLock]:
    """The locks a gateway holds: its record directory (records, incidents, and the quarantine
    file when it is there), and the quarantine's file when it is kept elsewhere
    (`<file>.lock`). Taken whether or not the recorder is enabled: incidents go there anyway."""
    directory = Path(settings.recorder.dir)
    locks = [StateLock.take(directory / LOCK_NAME, f"recorder.dir {directory}")]
    quarantine = settings.guard.quarantine
    uses_file = settings.guard.mode != "off" and quarantine.enabled \
        and quarantine.store == "memory"
    held = settings.quarantine_file
    if uses_file and held.parent.resolve() != directory.resolve():
        try:
            locks.append(StateLock.take(held.with_name(held.name + ".lock"),
                                        f"guard.quarantine.file {held}"))
        except OSError:
            locks[0].release()
            raise
    return locks
