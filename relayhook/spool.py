"""The spool: raw requests the store could not take in time, in an append-only local file.

    spool = Spool(Path("relayhook.spool")); spool.open()
    spool.append(record)                 # durable (fsync'd) when it returns
    for end, record in spool.read():     # oldest first, from where the last drain stopped
        ... store it ...
    spool.drained(end, count)            # empties the file once every entry is stored

One line per request: the CRC-32 of the JSON (8 hex digits), a space, the JSON, a newline. A
crash can only leave the last line half written, and that line was never acknowledged (the
answer waits for the fsync): `open` cuts it off. A line whose CRC does not match anywhere else
is copied to `<path>.bad` and skipped, so one damaged line does not stop the others.

Entries are removed only by emptying the whole file, once everything in it is stored; a crash
between storing and emptying hands the same requests over again, and the store skips request ids
it already has. One process owns a spool at a time (an exclusive `flock`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import logging
import os
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from relayhook.errors import RelayhookError
from relayhook.store import RequestRecord

log = logging.getLogger("relayhook.spool")

READ_CHUNK = 64  # entries handed over per read: one group commit's worth
EPOCH_SHIFT = 48  # a read's offsets carry the file's rewrite count above this bit


class SpoolError(RelayhookError):
    """The spool cannot be used (locked by another process, unreadable)."""


def encode_entry(record: RequestRecord) -> bytes:
    """One spool line for a request record."""
    data = {
        "id": record.id,
        "relay": record.relay,
        "received_at": record.received_at,
        "method": record.method,
        "query": record.query,
        "headers": [[name, value] for name, value in record.headers],
        "body": base64.b64encode(record.body).decode("ascii"),
        "status": record.status,
        "error": record.error,
        "truncated": record.truncated,
    }
    # ASCII-only JSON: an error message with any character at all still makes a valid line.
    text = json.dumps(data, separators=(",", ":")).encode("ascii")
    return b"%08x %s\n" % (zlib.crc32(text), text)


def decode_entry(line: bytes) -> RequestRecord:
    """The record of one spool line (without its newline); ValueError if damaged."""
    crc, _, text = line.partition(b" ")
    if len(crc) != 8 or int(crc, 16) != zlib.crc32(text):
        raise ValueError("CRC mismatch")
    data: dict[str, Any] = json.loads(text)
    return RequestRecord(
        id=data["id"],
        relay=data["relay"],
        received_at=data["received_at"],
        method=data["method"],
        query=data["query"],
        headers=tuple((name, value) for name, value in data["headers"]),
        body=base64.b64decode(data["body"]),
        status=data["status"],
        error=data["error"],
        truncated=bool(data["truncated"]),
    )


T = TypeVar("T")


class Spool:
    """An append-only file of request records. Thread-safe; `call` runs its methods on the
    spool's own thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = None
        self._lock = threading.Lock()
        self._read_at = 0  # where the next read starts: everything before it is stored
        self._depth = 0
        self._executor: ThreadPoolExecutor | None = None
        self._epoch = 0  # bumped when `scrub` rewrites the file: older read offsets are void

    async def call(self, method: Callable[..., T], *args: Any) -> T:
        """`method(*args)` on the spool's own thread: an emergency append's fsync never waits
        behind the default executor's argon2 hashes, SMTP sends or DNS lookups."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="relayhook-spool")
        return await asyncio.get_running_loop().run_in_executor(self._executor, method, *args)

    @property
    def depth(self) -> int:
        """How many spooled requests are not stored yet (for metrics and health checks)."""
        return self._depth

    def open(self) -> None:
        """Open (or create) the file, take it for this process, and count what waits in it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        try:
            file = self.path.open("a+b")
        except OSError as exc:
            raise SpoolError(f"cannot open the spool {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            file.close()
            raise SpoolError(
                f"the spool {self.path} is in use by another relayhook process;"
                " give each web process its own [spool] path"
            ) from exc
        if created:
            _fsync_dir(self.path.parent)  # the new file's name survives a power cut too
        self._file = file
        self._cut_torn_tail()
        self._depth = sum(1 for _ in self._lines(0))

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()  # also releases the flock
                self._file = None
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    def append(self, record: RequestRecord) -> None:
        """Add a record and fsync it: once this returns, the request survives a crash.
        OSError if the disk will not take it (then nothing was added)."""
        line = encode_entry(record)
        with self._lock:
            file = self._opened()
            size = file.seek(0, os.SEEK_END)
            try:
                file.write(line)
                file.flush()
                os.fsync(file.fileno())
            except OSError:
                with contextlib.suppress(OSError):  # no half line for the next append to follow
                    file.truncate(size)
                raise
            self._depth += 1

    def read(self, limit: int = READ_CHUNK) -> list[tuple[int, RequestRecord]]:
        """Up to `limit` records not yet drained, oldest first, each with the offset just past
        it (what `drained` takes). A damaged line met first is set aside and passed over."""
        records: list[tuple[int, RequestRecord]] = []
        with self._lock:
            for end, line in self._lines(self._read_at):
                try:
                    record = decode_entry(line)
                except (ValueError, KeyError, TypeError) as exc:
                    if records:  # passed over once it comes first, so that order holds
                        break
                    self._set_aside(line, f"damaged: {exc}")
                    self._read_at, self._depth = end, max(0, self._depth - 1)
                    continue
                records.append((self._epoch << EPOCH_SHIFT | end, record))
                if len(records) >= limit:
                    break
        return records

    def drained(self, end: int, count: int) -> None:
        """Everything before `end` (`count` records) is stored: read on from there, and empty
        the file when nothing else is in it."""
        with self._lock:
            file = self._opened()
            if end >> EPOCH_SHIFT != self._epoch:
                return  # read before `scrub` rewrote the file: handed over again, skipped by id
            self._read_at = max(self._read_at, end)
            self._depth = max(0, self._depth - count)
            if self._read_at >= file.seek(0, os.SEEK_END):
                file.truncate(0)
                os.fsync(file.fileno())
                self._read_at = 0
                self._depth = 0

    def _opened(self) -> BinaryIO:
        if self._file is None:
            raise SpoolError(f"the spool {self.path} is not open")
        return self._file

    def _lines(self, start: int) -> Iterator[tuple[int, bytes]]:
        """(offset past the line, line without its newline) from `start` on."""
        file = self._opened()
        file.seek(start)
        end = start
        for line in file:
            end += len(line)
            if line.endswith(b"\n"):
                yield end, line[:-1]

    def _cut_torn_tail(self) -> None:
        """Cut a last line that a crash left without its newline: it was never acknowledged."""
        file = self._opened()
        size = file.seek(0, os.SEEK_END)
        if size == 0:
            return
        file.seek(max(0, size - 1))
        if file.read(1) == b"\n":
            return
        keep = 0
        for end, _ in self._lines(0):
            keep = end
        log.warning(
            "spool %s: cut a request that was being written when the process stopped"
            " (%d bytes, never acknowledged)",
            self.path,
            size - keep,
        )
        file.truncate(keep)
        os.fsync(file.fileno())

    def scrub(self, scrub: Callable[[RequestRecord], RequestRecord | None]) -> int:
        """Rewrite the entries not yet stored through `scrub` (None: keep the entry as is), and
        the set-aside ones of `<path>.bad`; the number of entries changed. Crash-safe: a new
        file replaces the old one whole. Entries a drain has read meanwhile are handed over
        again (the store skips their ids)."""
        with self._lock:
            file = self._opened()
            lines = [line for _, line in self._lines(self._read_at)]
            new, changed = _scrubbed(lines, scrub)
            if changed:
                fresh = _replace_file(self.path, new)
                fcntl.flock(fresh.fileno(), fcntl.LOCK_EX)
                file.close()
                self._file = fresh
                self._read_at, self._depth, self._epoch = 0, len(new), self._epoch + 1
        bad = self.path.with_name(self.path.name + ".bad")
        if bad.exists():
            new, bad_changed = _scrubbed(bad.read_bytes().splitlines(), scrub)
            if bad_changed:
                _replace_file(bad, new).close()
            changed += bad_changed
        return changed

    def set_aside(self, record: RequestRecord, why: str) -> None:
        """Copy a record the store refuses for what it is to `<path>.bad` (it is drained as
        stored), rather than let it hold back every request behind it."""
        self._set_aside(encode_entry(record)[:-1], why)

    def _set_aside(self, line: bytes, why: str) -> None:
        bad = self.path.with_name(self.path.name + ".bad")
        log.error("spool %s: an entry is copied to %s and passed over: %s", self.path, bad, why)
        with bad.open("ab") as file:
            file.write(line + b"\n")
            file.flush()
            os.fsync(file.fileno())


def _scrubbed(
    lines: list[bytes], scrub: Callable[[RequestRecord], RequestRecord | None]
) -> tuple[list[bytes], int]:
    """The lines with each record scrubbed; a damaged line is dropped (it can no longer be
    read, so nothing in it can be kept safely)."""
    new, changed = [], 0
    for line in lines:
        try:
            record = decode_entry(line)
        except (ValueError, KeyError, TypeError):
            changed += 1
            continue
        scrubbed = scrub(record)
        changed += scrubbed is not None
        new.append(line if scrubbed is None else encode_entry(scrubbed)[:-1])
    return new, changed


def _replace_file(path: Path, lines: list[bytes]) -> BinaryIO:
    """Write `lines` to a new file that takes `path`'s place (fsync'd); it, opened."""
    temporary = path.with_name(path.name + ".new")
    with temporary.open("wb") as out:
        out.write(b"".join(line + b"\n" for line in lines))
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)
    return path.open("a+b")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be fsync'd
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
