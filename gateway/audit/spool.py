"""The local spool: records written to disk before their response is sent, kept until the sink
has them.

One file (segment) per batch, JSON lines, appended with one write() per record: a record is on
disk, in the kernel's hands, before its request is answered, so it survives the gateway's
crash; segments are fsynced when the sink is failing, so a backlog also survives the machine's.
A segment is deleted once its batch is in the sink. Each process spools into a directory of its
own, locked while it runs; at start, a process adopts the segments of directories whose owner
is gone (stopped, or crashed) and replays them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from pathlib import Path

from gateway.audit.record import Record


class Spool:
    """A process's own spool directory under ``root``; at start it adopts what processes that
    stopped or crashed left in theirs (a held lock means the owner is alive)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory = root / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.directory.mkdir(mode=0o700)
        lock = _lock(self.directory)
        assert lock is not None, "a new directory cannot be locked by anyone else"
        self._lock = lock
        self._next = 1
        for other in sorted(root.iterdir()):
            if other != self.directory and other.is_dir():
                self._adopt(other)
        self._open()  # created ahead: a request only ever appends to an open file

    def _adopt(self, other: Path) -> None:
        held = _lock(other)
        if held is None:
            return  # its owner is alive
        try:
            for segment in sorted(p for p in other.glob("*.jsonl") if p.stem.isdigit()):
                os.replace(segment, self._new_path())
            (other / ".lock").unlink(missing_ok=True)
            other.rmdir()
        except OSError:
            pass  # something else in there: leave it to a person
        finally:
            os.close(held)

    def _new_path(self) -> Path:
        path = self.directory / f"{self._next:012d}.jsonl"
        self._next += 1
        return path

    def segments(self) -> list[Path]:
        """The sealed segments (adopted ones included), oldest first; not the one open."""
        return sorted(p for p in self.directory.glob("*.jsonl")
                      if p.stem.isdigit() and p != self._path)

    def _open(self) -> None:
        self._path: Path = self._new_path()
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._written = 0

    def append(self, record: Record) -> None:
        """One record, on disk before this returns (OSError when it cannot be)."""
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        if os.write(self._fd, line) != len(line):
            raise OSError(f"short write to {self._path}")
        self._written += 1

    def seal(self) -> Path | None:
        """Close the segment being written and start the next (None when it holds nothing)."""
        if not self._written:
            return None
        sealed = self._path
        os.close(self._fd)
        self._open()
        return sealed

    @staticmethod
    def sync(paths: list[Path]) -> None:
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    @staticmethod
    def read(path: Path) -> list[Record]:
        """A segment's records; a line cut short by a crash is dropped (its request was never
        answered: the line is written before the response)."""
        records = []
        for line in path.read_bytes().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def close(self) -> None:
        """Stop; an empty spool directory is removed (one with records is adopted later)."""
        os.close(self._fd)
        if not self._written:
            self._path.unlink(missing_ok=True)
        if not self.segments():
            (self.directory / ".lock").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.directory.rmdir()
        os.close(self._lock)


def _lock(directory: Path) -> int | None:
    """An exclusive lock on ``directory``, or None when another process holds it."""
    fd = os.open(directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
