"""The local spool: records written to disk before their response is sent, kept until the sink
has them.

One file (segment) per batch, JSON lines, appended with one write() per record: a record is on
disk, in the kernel's hands, before its request is answered, so it survives the gateway's
crash; segments are fsynced when the sink is failing, so a backlog also survives the machine's.
A segment is deleted once its batch is in the sink; segments found at start are replayed. A lock
on the directory keeps a second gateway off the same spool.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from gateway.audit.record import Record


class SpoolLocked(RuntimeError):
    """Another process holds this spool."""


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = os.open(directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise SpoolLocked(f"another gateway is using the audit spool in {directory}; "
                              "give each replica its own data directory") from None
        self._next = 1 + max((int(p.stem) for p in self.segments()), default=0)
        self._fd: int | None = None
        self._path: Path | None = None

    def segments(self) -> list[Path]:
        return sorted(p for p in self.directory.glob("*.jsonl") if p.stem.isdigit())

    def append(self, record: Record) -> None:
        """One record, on disk before this returns (OSError when it cannot be)."""
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        if self._fd is None:
            self._path = self.directory / f"{self._next:012d}.jsonl"
            self._next += 1
            self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        written = os.write(self._fd, line)
        if written != len(line):
            raise OSError(f"short write to {self._path}")

    def seal(self) -> Path | None:
        """Close the segment being written (the next append starts a new one); its path."""
        path, fd = self._path, self._fd
        self._fd = self._path = None
        if fd is not None:
            os.close(fd)
        return path

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
        self.seal()
        os.close(self._lock)
