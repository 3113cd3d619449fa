"""Where detection and event messages wait for the broker: in memory, or on disk across restarts.

Both outboxes are bounded: beyond `outbox_size` messages (and, on disk, `outbox_max_mb` of
payload) the oldest routine messages (detections) not yet handed to the broker are dropped and
counted; precious ones (events: an object's `new` and `end` are few and are what an operator
looks back for) only when no routine message waits. Messages older than `outbox_max_age_s`
(disk only) are dropped whatever they are. Messages go out in the order they were put.
Messages handed to paho are "taken" and stay counted as queued until the broker acknowledges
them (`ack`), so published + queued + dropped always adds up to produced.

The disk outbox is SQLite in WAL mode. `put` commits before it returns, so a message survives a
crash or a SIGKILL of the daemon from then on; with `synchronous=NORMAL` a commit is not
fsync'ed, so `sync()` (called about once a second by the link) fsyncs the WAL: a power cut loses
at most the last second. A message is deleted only when the broker acknowledged it, so after a
restart everything unacknowledged is sent again, in order (at least once).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import sqlite3
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edge.config import MqttConfig
from edge.errors import ConfigError
from edge.files import running_user
from edge.wording import counted

log = logging.getLogger(__name__)

_SCHEMA = """CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0,
    precious INTEGER NOT NULL DEFAULT 0)"""
#: Outboxes written before `precious` existed gain it; a daemon of that age names its columns
#: when it inserts, so it still writes to an upgraded file (its events as routine: `_MARK`).
_ADD_PRECIOUS = "ALTER TABLE outbox ADD COLUMN precious INTEGER NOT NULL DEFAULT 0"
#: Marks as precious the messages on `precious_topics` that a version without the column wrote.
_MARK = "UPDATE outbox SET precious = 1 WHERE precious = 0 AND topic LIKE ?"
#: Outboxes written before messages were dated by the time since boot gain it (NULL: aged by
#: the system clock, as are those an older daemon writes).
_ADD_BOOT = ("ALTER TABLE outbox ADD COLUMN boot TEXT;"
             "ALTER TABLE outbox ADD COLUMN since_boot REAL;")
#: Messages past `outbox_max_age_s` not yet taken: those put since this boot by the time
#: since boot, which no one sets; those from an earlier boot by the system clock. A device
#: offline since a boot with a stale clock (no battery-backed clock: many Jetson and Raspberry
#: Pi boards) lost every message it kept for the broker when the network came back and NTP
#: set its clock days forward, though none was a minute old.
_AGED = ("id > ? AND (CASE WHEN boot = ? THEN since_boot < ? ELSE created < ? END)")
#: The journal (WAL) is copied into the database, and starts over, once it holds this many
#: pages (4 kB each), and its file is cut back to `WAL_SIZE_LIMIT` after: SQLite's 1000
#: pages let it take 4 MB beside a near-empty outbox, and a device with less free than that
#: lost the disk outbox at its first messages, with nothing queued (a user check on a small
#: file system). Each copy costs two fsyncs, about one every half-minute at 10 messages a
#: second.
WAL_CHECKPOINT_PAGES = 128
WAL_SIZE_LIMIT = 1 << 19
#: What a full outbox drops first: routine messages, oldest first.
_BY_DROP_ORDER = "CREATE INDEX IF NOT EXISTS outbox_drop_order ON outbox (precious, id)"


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    #: kept over routine messages when the outbox is full
    precious: bool = False


@dataclass(frozen=True)
class Dropped:
    """Messages a `put` dropped to make room or for their age, how many of them were
    precious, and how many were dropped for their age (`outbox_max_age_s`)."""

    count: int = 0
    precious: int = 0
    aged: int = 0

    def __add__(self, other: Dropped) -> Dropped:
        return Dropped(self.count + other.count, self.precious + other.precious,
                       self.aged + other.aged)


class Outbox(Protocol):
    """Not thread-safe: the link calls it with its lock held."""

    def put(self, message: Message) -> Dropped:
        """Queue `message`; returns what was dropped to make room (`message` itself when it
        is routine and only precious messages wait)."""

    def take(self, limit: int) -> list[tuple[int, Message]]:
        """Up to `limit` of the oldest messages not yet taken, with keys for `ack`."""

    def ack(self, key: int) -> None:
        """The broker has the message taken under `key`: forget it."""

    @property
    def depth(self) -> int:
        """Messages not yet acknowledged (waiting and taken)."""

    @property
    def durable(self) -> int:
        """Of `depth`: messages that stay on disk for the next start."""

    @property
    def waiting(self) -> int:
        """Messages not yet taken."""

    def sync(self) -> None:
        """Make everything put so far durable (no-op in memory); called without the link's
        lock, so it must not change what the other methods read."""

    def close(self) -> None: ...


class MemoryOutbox:
    """Two FIFOs, routine and precious, merged by arrival when taken; what is taken is paho's
    to resend, so `ack` only counts."""

    def __init__(self, max_messages: int) -> None:
        self._routine: deque[tuple[int, Message]] = deque()  # (arrival, message)
        self._precious: deque[tuple[int, Message]] = deque()
        self._max = max_messages
        self._taken = 0
        self._arrivals = 0

    def put(self, message: Message) -> Dropped:
        self._arrivals += 1
        (self._precious if message.precious else self._routine).append((self._arrivals, message))
        count = precious = 0
        while self.waiting > 1 and self.depth > self._max:
            if self._routine:
                self._routine.popleft()
            else:
                self._precious.popleft()
                precious += 1
            count += 1
        return Dropped(count, precious)

    def take(self, limit: int) -> list[tuple[int, Message]]:
        batch: list[tuple[int, Message]] = []
        while len(batch) < limit and (self._routine or self._precious):
            older = self._precious if not self._routine or (
                self._precious and self._precious[0][0] < self._routine[0][0]) else self._routine
            batch.append(older.popleft())
        self._taken += len(batch)
        return batch

    def ack(self, key: int) -> None:
        self._taken -= 1

    @property
    def depth(self) -> int:
        return self.waiting + self._taken

    @property
    def durable(self) -> int:
        return 0

    @property
    def waiting(self) -> int:
        return len(self._routine) + len(self._precious)

    def sync(self) -> None:
        return None

    def close(self) -> None:
        return None


def _read_boot_id() -> str | None:
    """This boot's id (Linux), None where the system has none."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


_BOOT_ID = _read_boot_id()
_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)  # Linux; counts suspend too


def _since_boot() -> float:
    """Seconds since this boot, as the kernel counts them: never set, never stepped."""
    return time.clock_gettime(_BOOTTIME)


class DiskOutbox:
    """SQLite (WAL) outbox; see the module docstring for what survives what."""

    #: Age limits are enforced at most this often (seconds): a DELETE per message is wasteful.
    AGE_CHECK_S = 1.0

    def __init__(self, path: Path, max_messages: int, max_bytes: int, max_age_s: float,
                 precious_topics: str | None = None) -> None:
        """`precious_topics`: an SQL LIKE pattern of the topics whose messages are precious
        when a version that did not mark them wrote them (upgrades and downgrades)."""
        self.path = path
        self._max_messages, self._max_bytes, self._max_age_s = max_messages, max_bytes, max_age_s
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock_for_this_process(path)
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        except BaseException:
            os.close(self._lock_fd)
            raise
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
            self._db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            self._db.execute(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
            if "precious" not in columns:
                self._db.execute(_ADD_PRECIOUS)
            if "boot" not in columns:
                self._db.executescript(_ADD_BOOT)
            if precious_topics is not None:
                self._db.execute(_MARK, (precious_topics,))
            self._db.execute(_BY_DROP_ORDER)
            self._db.execute("BEGIN IMMEDIATE")  # proves the file is writable now, not later
            self._db.execute("COMMIT")
            row = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0), COALESCE(MAX(id), 0) "
                "FROM outbox").fetchone()
        except sqlite3.Error:
            self._db.close()
            os.close(self._lock_fd)
            raise
        self._count, self._bytes = int(row[0]), int(row[1])
        self._cursor = 0  # every id <= cursor has been taken
        self._taken: dict[int, int] = {}  # id -> payload bytes, taken and not yet acked
        self._next_age_check = 0.0
        self._wal_fd: int | None = None

    def put(self, message: Message) -> Dropped:
        now = time.time()
        self._db.execute("INSERT INTO outbox (created, boot, since_boot, topic, payload, qos, "
                         "retain, precious) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (now, _BOOT_ID, _since_boot(), message.topic, message.payload,
                          message.qos, int(message.retain), int(message.precious)))
        self._count += 1
        self._bytes += len(message.payload)
        return self._enforce_limits(now)

    def _enforce_limits(self, now: float) -> Dropped:
        dropped = Dropped()
        if time.monotonic() >= self._next_age_check:
            self._next_age_check = time.monotonic() + self.AGE_CHECK_S
            aged = self._drop(_AGED, (self._cursor, _BOOT_ID, _since_boot() - self._max_age_s,
                                      now - self._max_age_s))
            dropped += Dropped(aged.count, aged.precious, aged.count)
        while self._count - len(self._taken) > 1 and (
                self._count > self._max_messages or self._bytes > self._max_bytes):
            excess = max(1, self._count - self._max_messages)
            removed = self._drop("id IN (SELECT id FROM outbox WHERE id > ? "
                                 "ORDER BY precious, id LIMIT ?)", (self._cursor, excess))
            dropped += removed
            if removed.count == 0:
                break
        return dropped

    def _drop(self, where: str, args: tuple[float | str | None, ...]) -> Dropped:
        row = self._db.execute(f"SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0), "
                               f"COALESCE(SUM(precious), 0) FROM outbox WHERE {where}",
                               args).fetchone()
        if not row[0]:
            return Dropped()
        self._db.execute(f"DELETE FROM outbox WHERE {where}", args)
        self._count -= int(row[0])
        self._bytes -= int(row[1])
        return Dropped(int(row[0]), int(row[2]))

    def take(self, limit: int) -> list[tuple[int, Message]]:
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, retain, precious FROM outbox WHERE id > ? "
            "ORDER BY id LIMIT ?", (self._cursor, limit)).fetchall()
        batch = []
        for key, topic, payload, qos, retain, precious in rows:
            self._taken[key] = len(payload)
            batch.append((key, Message(topic, bytes(payload), qos, bool(retain), bool(precious))))
        if rows:
            self._cursor = rows[-1][0]
        return batch

    def ack(self, key: int) -> None:
        """Delete the delivered message `key`; where the delete fails (a full disk), it stays
        taken and counted, and a later `ack` may delete it."""
        size = self._taken.get(key)
        if size is not None:
            self._db.execute("DELETE FROM outbox WHERE id = ?", (key,))
            del self._taken[key]
            self._count -= 1
            self._bytes -= size

    @property
    def depth(self) -> int:
        return self._count

    @property
    def durable(self) -> int:
        return self._count

    @property
    def waiting(self) -> int:
        return self._count - len(self._taken)

    def sync(self) -> None:
        if self._wal_fd is None:
            with contextlib.suppress(OSError):
                self._wal_fd = os.open(f"{self.path}-wal", os.O_RDONLY)
        if self._wal_fd is not None:
            os.fsync(self._wal_fd)

    def close(self, remove: bool = False) -> None:
        """Close the database; `remove`: delete its files too (the caller knows nothing in
        it is needed), which frees their space on a full disk, where no row can be deleted."""
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
        self._db.close()
        if remove:  # while this process still holds the lock: no one opens it meanwhile
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.path}{suffix}")
        if self._lock_fd >= 0:  # the lock goes with it; a second close must not close a
            os.close(self._lock_fd)  # descriptor since reused elsewhere
            self._lock_fd = -1


class OutboxInUseError(Exception):
    """Another process holds the disk outbox (its pid, where it wrote it)."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def _lock_for_this_process(path: Path) -> int:
    """An exclusive lock on `<path>.lock` for as long as the returned descriptor is open (the
    kernel lets it go when the process ends, killed too), holding this process's id; an
    OutboxInUseError naming the holder where another process has it (a user check: two
    daemons given one outbox_path each counted the other's messages as theirs, one summary
    ending `-96 queued`)."""
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise OutboxInUseError(holder) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class FallbackOutbox:
    """The disk outbox until it fails (disk full, read-only remount, removed device), said
    once. A write failure sends new messages to memory while what sits on disk is still sent
    first; a read failure strands what is left on disk: it stays counted as queued (and kept:
    it is sent at the next start).

    On a full disk even a delivered message cannot be deleted (SQLite's delete writes to its
    journal): it is counted as published, its delete is tried again now and then, and where
    every message left on disk at `close` is such a one the files are removed whole. A user
    check: the stop line counted one as queued (89 produced = 89 published + 1 queued), and
    14 delivered messages were sent again at every start."""

    #: Seconds between tries to delete delivered messages a full disk kept.
    DELETE_RETRY_S = 1.0

    def __init__(self, disk: DiskOutbox, memory: MemoryOutbox) -> None:
        self.disk: DiskOutbox | None = disk
        self.memory = memory
        self._writable = True
        self._stranded = 0
        self._sync_failed = False
        self._disk_keys: set[int] = set()  # taken from disk, not yet acked
        self._delivered: set[int] = set()  # acked, their delete failed on a full disk
        self._next_delete = 0.0
        self._full = False  # the disk filled in this run

    def _failed(self, exc: sqlite3.Error | OSError, reading: bool) -> None:
        assert self.disk is not None
        self._full = self._full or _disk_full(exc)
        if self._writable:
            log.error("the disk outbox %s failed (%s); new detections are kept in memory from "
                      "now on (they will not survive a restart)", self.disk.path, exc)
        self._writable = False
        if reading:
            self._stranded = self.disk.waiting
            with contextlib.suppress(sqlite3.Error, OSError):
                self.disk.close()
            self.disk = None

    def put(self, message: Message) -> Dropped:
        if self.disk is not None and self._writable:
            try:
                return self.disk.put(message)
            except (sqlite3.Error, OSError) as exc:
                self._failed(exc, reading=False)
        return self.memory.put(message)

    def take(self, limit: int) -> list[tuple[int, Message]]:
        if self.disk is not None and self.disk.waiting:
            try:
                batch = self.disk.take(limit)
            except (sqlite3.Error, OSError) as exc:
                self._failed(exc, reading=True)
            else:
                self._disk_keys.update(key for key, _ in batch)
                return batch
        # memory keys are made negative so they never collide with disk row ids
        return [(-key, message) for key, message in self.memory.take(limit)]

    def ack(self, key: int) -> None:
        if key < 0:
            self.memory.ack(-key)
            return
        self._disk_keys.discard(key)
        if self.disk is None:
            return
        try:
            self.disk.ack(key)
        except (sqlite3.Error, OSError) as exc:
            if not _disk_full(exc):
                self._failed(exc, reading=True)
                return
            self._delivered.add(key)
            self._next_delete = time.monotonic() + self.DELETE_RETRY_S
            self._failed(exc, reading=False)
            return
        if self._delivered and time.monotonic() >= self._next_delete:
            self._delete_delivered()

    def _delete_delivered(self) -> None:
        """Try again to delete the delivered messages a full disk kept, oldest first."""
        assert self.disk is not None
        for key in sorted(self._delivered):
            try:
                self.disk.ack(key)
            except (sqlite3.Error, OSError):
                self._next_delete = time.monotonic() + self.DELETE_RETRY_S
                return
            self._delivered.discard(key)

    @property
    def depth(self) -> int:
        return self.durable + self.memory.depth

    @property
    def durable(self) -> int:
        """Queued messages that stay on disk for the next start (not those delivered whose
        delete a full disk refused)."""
        if self.disk is not None:
            return self.disk.depth - len(self._delivered)
        return self._stranded + len(self._disk_keys)

    @property
    def waiting(self) -> int:
        return (self.disk.waiting if self.disk is not None else 0) + self.memory.waiting

    def sync(self) -> None:
        """Called without the link's lock (it may wait for the disk): changes no state."""
        disk = self.disk
        if disk is not None:
            try:
                disk.sync()
            except OSError as exc:
                if not self._sync_failed:
                    log.warning("cannot fsync the disk outbox %s (%s): a power cut may lose "
                                "the last detections", disk.path, exc)
                self._sync_failed = True

    def close(self) -> None:
        disk = self.disk
        if disk is None:
            return
        if self._delivered:
            self._delete_delivered()
        if self._full and disk.depth == len(self._delivered):  # nothing in it is needed
            # its journal may fill the disk still (a checkpoint needs room too): a next start
            # would find the disk as full, and the outbox failing at once
            disk.close(remove=True)
            kept = (f"only messages already delivered ({len(self._delivered)}), which the "
                    "full disk kept it from deleting" if self._delivered else
                    "nothing left to send, its journal the disk's last space")
            log.info("the disk outbox %s held %s: removed it whole, freeing its space for the "
                     "next start", disk.path, kept)
            return
        disk.close()
        if self._delivered:
            one = len(self._delivered) == 1
            log.warning("%s already delivered %s in the disk outbox %s, which the full disk "
                        "kept from deleting %s: the next start sends %s again (the broker "
                        "gets %s twice); free space on that disk",
                        counted(len(self._delivered), "message"), "stays" if one else "stay",
                        disk.path, *(("it",) * 3 if one else ("them",) * 3))


def _disk_full(exc: BaseException) -> bool:
    """Whether `exc` says the disk (or the file system's quota) is full: SQLITE_FULL, or an
    OSError ENOSPC or EDQUOT."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    # sqlite_errorname is Python 3.11's; 3.10 has the message only
    return (getattr(exc, "sqlite_errorname", None) == "SQLITE_FULL"
            or "database or disk is full" in str(exc))


def outbox_from_config(settings: MqttConfig, precious_topics: str | None = None) -> Outbox:
    """The configured outbox; a disk outbox that cannot be opened and written is a ConfigError
    naming `mqtt.outbox_path`. `precious_topics`: see `DiskOutbox`."""
    memory = MemoryOutbox(settings.outbox_size)
    if settings.outbox == "memory":
        return memory
    path = settings.outbox_path
    if path.is_dir():
        raise ConfigError(f"mqtt.outbox_path {path} is a folder; give the SQLite file to keep "
                          f"the outbox in, e.g. {path / 'outbox.sqlite'}")
    try:
        disk = DiskOutbox(path, settings.outbox_size, int(settings.outbox_max_mb * 1024 * 1024),
                          settings.outbox_max_age_s, precious_topics)
    except OutboxInUseError as exc:
        held = f" (process {exc.holder})" if exc.holder.isdigit() else ""
        raise ConfigError(f"mqtt.outbox_path {path} is in use by another running daemon{held}: "
                          "two daemons sharing one outbox would send and count each other's "
                          "messages; give each its own outbox_path") from None
    except sqlite3.DatabaseError as exc:
        if not any(sign in str(exc) for sign in ("not a database", "malformed")):
            raise _cannot_open(path, exc) from exc
        raise ConfigError(f"mqtt.outbox_path {path}: not a readable outbox ({exc}): another "
                          "program's file, or one damaged (a disk failure); move it aside (what "
                          "it held is then not sent) and start again, or give another path")\
            from exc
    except (sqlite3.Error, OSError) as exc:
        raise _cannot_open(path, exc) from exc
    return FallbackOutbox(disk, memory)


def _cannot_open(path: Path, exc: Exception) -> ConfigError:
    return ConfigError(f"mqtt.outbox_path {path}: cannot open the disk outbox "
                       f"({_why_unwritable(path) or exc}); give a writable path on a disk with "
                       "free space, or set mqtt.outbox = \"memory\"")


def _why_unwritable(path: Path) -> str | None:
    """What SQLite's and the OS's words leave unclear ("unable to open database file",
    "File exists"): a file where a folder should be, or a folder or file this user may not
    write; None when neither is the case."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None:
        return None
    if existing != path and not existing.is_dir():
        return f"{existing} is a file, not a folder"
    folder = existing if existing != path else path.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        if folder != path.parent:  # a state directory not made (a user check said only this)
            return (f"its folder {path.parent} does not exist, and {running_user()} may not "
                    f"make it in {folder}: make it, owned by that user (the systemd unit's "
                    "StateDirectory=edge makes /var/lib/edge)")
        return f"{running_user()} may not write in {folder}"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return f"{running_user()} may not read and write {path}"
    return None
