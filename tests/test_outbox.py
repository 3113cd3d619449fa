"""The outboxes on their own: bounds, order, what survives reopening, the fallback to memory."""

from __future__ import annotations

import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.config import MqttConfig
from edge.errors import ConfigError
from edge.mqtt import outbox as outbox_module
from edge.mqtt.outbox import (
    DiskOutbox,
    Dropped,
    FallbackOutbox,
    MemoryOutbox,
    Message,
    outbox_from_config,
)


def message(n: int, size: int = 10) -> Message:
    return Message("edge/t/cam/detections", str(n).encode().ljust(size, b" "), 1)


def event(n: int) -> Message:
    return Message("edge/t/cam/events", str(n).encode(), 1, precious=True)


def numbers(batch: list[tuple[int, Message]]) -> list[int]:
    return [int(m.payload) for _, m in batch]


def disk(tmp_path: Path, max_messages: int = 100, max_bytes: int = 10**6,
         max_age_s: float = 3600) -> DiskOutbox:
    return DiskOutbox(tmp_path / "outbox.sqlite", max_messages, max_bytes, max_age_s)


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_bounded_by_count_oldest_dropped_and_counted(tmp_path, kind):
    outbox = MemoryOutbox(5) if kind == "memory" else disk(tmp_path, max_messages=5)
    dropped = sum(outbox.put(message(n)).count for n in range(8))
    assert (dropped, outbox.depth, outbox.waiting) == (3, 5, 5)
    taken = outbox.take(2)
    assert numbers(taken) == [3, 4]
    assert (outbox.depth, outbox.waiting) == (5, 3)
    # taken messages are the broker's now: never dropped to make room
    assert sum(outbox.put(message(n)).count for n in range(8, 12)) == 4
    assert numbers(outbox.take(10)) == [9, 10, 11]
    for key, _ in taken:
        outbox.ack(key)
    assert outbox.depth == 3
    outbox.close()


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_a_full_outbox_drops_detections_before_events_and_keeps_the_order(tmp_path, kind):
    outbox = MemoryOutbox(6) if kind == "memory" else disk(tmp_path, max_messages=6)
    # an outage: a detection a frame, an event now and then
    put = [event(n) if n % 5 == 0 else message(n) for n in range(20)]
    dropped = [outbox.put(m) for m in put]
    assert sum(d.count for d in dropped) == 14 and sum(d.precious for d in dropped) == 0
    taken = outbox.take(10)
    assert numbers(taken) == [0, 5, 10, 15, 18, 19], "every event, in the order put"
    assert [m.precious for _, m in taken] == [True, True, True, True, False, False]
    for key, _ in taken:
        outbox.ack(key)
    # only events waiting: the oldest event goes, and a detection put then is dropped itself
    for n in range(100, 106):
        outbox.put(event(n))
    assert outbox.put(event(106)) == Dropped(1, 1)
    assert outbox.put(message(107)) == Dropped(1, 0)
    assert numbers(outbox.take(10)) == list(range(101, 107))
    outbox.close()


def test_a_disk_outbox_from_before_precious_messages_is_upgraded_in_place(tmp_path):
    path = tmp_path / "outbox.sqlite"
    old = sqlite3.connect(path)
    old.execute("""CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT
        NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL,
        retain INTEGER NOT NULL DEFAULT 0)""")
    old.executemany("INSERT INTO outbox (created, topic, payload, qos, retain) "
                    "VALUES (?, 'edge/t/cam/detections', ?, 1, 0)",
                    [(time.time(), str(n).encode()) for n in range(3)])
    old.execute("INSERT INTO outbox (created, topic, payload, qos, retain) "
                "VALUES (?, 'edge/t/cam/events', ?, 1, 0)", (time.time(), b"3"))
    old.commit()
    outbox = DiskOutbox(path, 5, 10**6, 3600, precious_topics="edge/t/%/events")
    assert outbox.depth == 4
    outbox.put(event(4))
    # the oldest detection goes, not the event the old version wrote
    assert outbox.put(message(5)) == Dropped(1, 0)
    taken = outbox.take(10)
    assert numbers(taken) == [1, 2, 3, 4, 5]
    assert [m.precious for _, m in taken] == [False, False, True, True, False]
    outbox.close()
    # a daemon of the old version (naming its columns) still writes to the upgraded file; its
    # events are marked when this version opens the file again (a downgrade and back)
    old.executemany("INSERT INTO outbox (created, topic, payload, qos, retain) "
                    "VALUES (?, ?, ?, 1, 0)", [(time.time(), "edge/t/cam/detections", b"6"),
                                               (time.time(), "edge/t/cam/events", b"7")])
    old.commit()
    old.close()
    reopened = DiskOutbox(path, 10, 10**6, 3600, precious_topics="edge/t/%/events")
    taken = reopened.take(10)
    assert numbers(taken) == [1, 2, 3, 4, 5, 6, 7]
    assert [m.precious for _, m in taken][-2:] == [False, True]
    reopened.close()


def test_outbox_files_that_cannot_hold_an_outbox_are_named_with_the_fix(tmp_path):
    """A helper's check: a corrupt file was told to use 'a writable path on a disk with free
    space', and a folder got SQLite's 'unable to open database file'."""
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not sqlite at all " * 300)
    with pytest.raises(ConfigError, match=r"garbage.sqlite: not a readable outbox \(file is not "
                                          r"a database\).*move it aside"):
        outbox_from_config(MqttConfig(outbox="disk", outbox_path=garbage))
    damaged = tmp_path / "damaged.sqlite"
    outbox = DiskOutbox(damaged, 1000, 10**8, 3600)
    for n in range(300):
        outbox.put(message(n, size=500))
    outbox.close()
    data = bytearray(damaged.read_bytes())
    data[4096:4096 + 16384] = b"\xff" * 16384  # pages in the middle overwritten
    damaged.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"damaged.sqlite: not a readable outbox .*malformed"):
        outbox_from_config(MqttConfig(outbox="disk", outbox_path=damaged))
    folder = tmp_path / "outbox.sqlite"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"outbox.sqlite is a folder; give the SQLite file .* "
                                          r"e\.g\. .*outbox.sqlite/outbox.sqlite"):
        outbox_from_config(MqttConfig(outbox="disk", outbox_path=folder))


def test_the_disk_outbox_drops_through_an_index(tmp_path):
    outbox = disk(tmp_path)
    plan = outbox._db.execute("EXPLAIN QUERY PLAN SELECT id FROM outbox WHERE id > 0 "
                              "ORDER BY precious, id LIMIT 1").fetchall()
    assert any("outbox_drop_order" in row[-1] for row in plan), plan
    assert not any("TEMP B-TREE" in row[-1] for row in plan), plan
    outbox.close()


def test_disk_outbox_survives_reopening_and_resends_what_was_not_acknowledged(tmp_path):
    """A process killed (SIGKILL, no close) with 4 of its 6 messages unacknowledged: the next
    one to open the file has those 4, in order; the lock went with the killed process."""
    script = ("import os, signal, sys\n"
              "from pathlib import Path\n"
              "from edge.mqtt.outbox import DiskOutbox, Message\n"
              "outbox = DiskOutbox(Path(sys.argv[1]), 100, 10**6, 3600)\n"
              "for n in range(6):\n"
              "    outbox.put(Message('edge/t/cam/detections', str(n).encode().ljust(10), 1))\n"
              "batch = outbox.take(4)\n"
              "outbox.ack(batch[0][0])\n"
              "outbox.ack(batch[2][0])\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path / "outbox.sqlite")],
                            capture_output=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    reopened = disk(tmp_path)
    assert reopened.depth == 4
    assert numbers(reopened.take(10)) == [1, 3, 4, 5]
    reopened.close()


def test_a_disk_outbox_another_process_holds_is_refused_naming_it(tmp_path):
    """A user check: two daemons given one outbox_path each sent and counted the other's
    messages (one summary ended `-96 queued`); the second is refused, naming the first."""
    settings = MqttConfig(outbox="disk", outbox_path=tmp_path / "outbox.sqlite")
    first = outbox_from_config(settings)
    try:
        with pytest.raises(ConfigError, match=re.escape(
                f"mqtt.outbox_path {tmp_path / 'outbox.sqlite'} is in use by another running "
                f"daemon (process {os.getpid()}): two daemons sharing one outbox would send "
                "and count each other's messages; give each its own outbox_path")):
            outbox_from_config(settings)
    finally:
        first.close()
    outbox_from_config(settings).close()  # free again once the first has closed


def test_disk_outbox_bounded_by_bytes_and_age(tmp_path):
    outbox = disk(tmp_path, max_bytes=100)
    dropped = sum(outbox.put(message(n, size=30)).count for n in range(5))
    assert dropped == 2 and outbox.depth == 3
    assert numbers(outbox.take(10)) == [2, 3, 4]
    outbox.close()

    aged = DiskOutbox(tmp_path / "aged.sqlite", 100, 10**6, max_age_s=0.2)
    aged.put(message(0))
    aged.put(message(1))
    time.sleep(1.3)  # past the age and past the age-check interval
    assert aged.put(message(2)).count == 2
    assert numbers(aged.take(10)) == [2]
    aged.close()


@pytest.mark.parametrize(
    ("path", "why"),
    [(lambda tmp: tmp / "a-file" / "outbox.sqlite",  # the parent is a regular file
      r"\(.*a-file is a file, not a folder\)"),  # not "[Errno 17] File exists"
     (lambda tmp: Path("/proc/edge-outbox/outbox.sqlite"), "")],  # a read-only file system
    ids=["parent-is-a-file", "read-only"])
def test_an_outbox_path_that_cannot_be_written_is_a_config_error(tmp_path, path, why):
    (tmp_path / "a-file").write_text("x")
    settings = MqttConfig(outbox="disk", outbox_path=path(tmp_path))
    expected = r"mqtt\.outbox_path .*cannot open the disk outbox " + why
    with pytest.raises(ConfigError, match=expected):
        outbox_from_config(settings)


def test_an_outbox_folder_this_user_may_not_write_in_is_said_so(tmp_path, monkeypatch):
    """SQLite says only "unable to open database file" (a user check as a service user);
    the refusal is simulated, as root (CI) may write anywhere."""
    folder = tmp_path / "outbox"
    folder.mkdir()
    monkeypatch.setattr(outbox_module.os, "access", lambda p, mode: Path(p) != folder)
    assert re.fullmatch(r"(user \S+ \()?uid \d+\)? may not write in .*/outbox",
                        outbox_module._why_unwritable(folder / "outbox.sqlite") or "")
    (folder / "outbox.sqlite").write_bytes(b"")
    monkeypatch.setattr(outbox_module.os, "access", lambda p, mode: Path(p) == folder)
    assert (outbox_module._why_unwritable(folder / "outbox.sqlite") or "").endswith(
        f"may not read and write {folder / 'outbox.sqlite'}")
    # a state directory never made, in a folder this user may not write in
    monkeypatch.setattr(outbox_module.os, "access", lambda p, mode: Path(p) != folder)
    assert re.fullmatch(r"its folder .*/outbox/state does not exist, and (user \S+ \()?uid "
                        r"\d+\)? may not make it in .*/outbox: make it, owned by that user "
                        r"\(the systemd unit's StateDirectory=edge makes /var/lib/edge\)",
                        outbox_module._why_unwritable(folder / "state" / "outbox.sqlite") or "")
    monkeypatch.undo()
    assert outbox_module._why_unwritable(folder / "outbox.sqlite") is None


def test_a_full_disk_at_run_time_falls_back_to_memory_and_says_so_once(tmp_path, caplog):
    outbox = outbox_from_config(MqttConfig(outbox="disk", outbox_path=tmp_path / "o.sqlite"))
    assert isinstance(outbox, FallbackOutbox) and outbox.disk is not None
    outbox.put(message(0))
    # SQLite's own page limit gives the same error as a full file system: SQLITE_FULL
    pages = outbox.disk._db.execute("PRAGMA page_count").fetchone()[0]
    outbox.disk._db.execute(f"PRAGMA max_page_count = {pages}")
    for n in range(1, 200):
        outbox.put(message(n, size=500))
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1 and "kept in memory" in failures[0].getMessage()
    assert "full" in failures[0].getMessage()
    taken = []
    while batch := outbox.take(7):
        taken += batch
    assert numbers(taken) == list(range(200)), "what is on disk first, then memory, in order"
    assert outbox.depth == 200 and outbox.durable < 200
    for key, _ in taken:
        outbox.ack(key)
    assert outbox.depth == 0
    outbox.close()


class _FullDisk:
    """A disk outbox's connection on a disk that fills: while `full`, every write fails as
    SQLite fails on a full file system (SQLITE_FULL), deletes too."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db, self.full = db, False

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if self.full and sql.lstrip().upper().startswith(("INSERT", "DELETE", "UPDATE")):
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, *args)

    def close(self) -> None:
        self._db.close()


def _filling(path: Path) -> tuple[FallbackOutbox, _FullDisk]:
    outbox = outbox_from_config(MqttConfig(outbox="disk", outbox_path=path))
    assert isinstance(outbox, FallbackOutbox) and outbox.disk is not None
    connection = _FullDisk(outbox.disk._db)
    outbox.disk._db = connection  # type: ignore[assignment]
    return outbox, connection


def _deliver(outbox: FallbackOutbox, count: int) -> list[int]:
    taken = outbox.take(count)
    for key, _ in taken:
        outbox.ack(key)
    return [int(m.payload) for _, m in taken]


def test_delivered_messages_a_full_disk_keeps_are_not_counted_as_queued(tmp_path, caplog):
    """A user check: on a full tmpfs, the stop line read `89 produced = 89 published + 1
    queued`, and the 14 messages delivered but never deleted were sent again at every start."""
    path = tmp_path / "o.sqlite"
    outbox, connection = _filling(path)
    for n in range(10):
        outbox.put(message(n))
    assert _deliver(outbox, 3) == [0, 1, 2]
    connection.full = True
    with caplog.at_level(logging.INFO, logger="edge.mqtt.outbox"):
        assert _deliver(outbox, 4) == [3, 4, 5, 6]  # delivered; not one deleted
        outbox.put(message(10))  # to memory
        assert outbox.durable == 3 and outbox.depth == 4, "7, 8, 9 on disk, 10 in memory"
        assert _deliver(outbox, 10) == [7, 8, 9]
        assert _deliver(outbox, 10) == [10]
        assert outbox.depth == 0 and outbox.durable == 0
        outbox.close()
    said = [r.getMessage() for r in caplog.records]
    assert said[0].startswith(f"the disk outbox {path} failed (database or disk is full)")
    assert said[1] == (f"the disk outbox {path} held only messages already delivered (7), "
                       "which the full disk kept it from deleting: removed it whole, freeing "
                       "its space for the next start")
    assert not path.exists() and not Path(f"{path}-wal").exists()
    # the next start finds an empty outbox: nothing is sent again
    reopened = outbox_from_config(MqttConfig(outbox="disk", outbox_path=path))
    assert reopened.depth == 0 and reopened.take(10) == []
    reopened.close()


def test_a_full_disk_that_frees_up_deletes_what_it_kept_and_keeps_what_was_not_sent(
        tmp_path, caplog):
    path = tmp_path / "o.sqlite"
    outbox, connection = _filling(path)
    for n in range(6):
        outbox.put(message(n))
    connection.full = True
    assert _deliver(outbox, 2) == [0, 1]
    connection.full = False
    outbox._next_delete = 0.0  # the retry is due
    assert _deliver(outbox, 1) == [2]  # its delete succeeds, and the kept ones' after it
    assert outbox.durable == 3
    connection.full = True
    assert _deliver(outbox, 1) == [3]  # kept again
    with caplog.at_level(logging.WARNING, logger="edge.mqtt.outbox"):
        outbox.close()  # 4 and 5 were never sent: the file stays
    assert caplog.records[-1].getMessage() == (
        f"1 message already delivered stays in the disk outbox {path}, which the full disk "
        "kept from deleting it: the next start sends it again (the broker gets it twice); "
        "free space on that disk")
    reopened = outbox_from_config(MqttConfig(outbox="disk", outbox_path=path))
    assert numbers(reopened.take(10)) == [3, 4, 5]
    reopened.close()


def test_an_outbox_that_filled_its_disk_and_holds_nothing_to_send_is_removed_at_close(
        tmp_path, caplog):
    """Its journal (WAL) can take the disk's last space, which no checkpoint frees on a full
    disk: a real 300 kB tmpfs kept 266 kB of it after every message was sent, so the next
    start found the disk full and the outbox failed at once. A healthy one stays."""
    path = tmp_path / "o.sqlite"
    outbox, connection = _filling(path)
    outbox.put(message(0))
    connection.full = True
    outbox.put(message(1))  # to memory
    connection.full = False  # deletes go through, as a WAL's can until it needs a new page
    assert _deliver(outbox, 5) == [0] and _deliver(outbox, 5) == [1]
    with caplog.at_level(logging.INFO, logger="edge.mqtt.outbox"):
        outbox.close()
    assert caplog.records[-1].getMessage() == (
        f"the disk outbox {path} held nothing left to send, its journal the disk's last "
        "space: removed it whole, freeing its space for the next start")
    assert not path.exists()
    healthy, _ = _filling(path)
    healthy.put(message(0))
    _deliver(healthy, 1)
    healthy.close()
    assert path.exists()


def test_the_journal_stays_small_beside_a_near_empty_outbox(tmp_path):
    """A user check: on a file system with 300 kB free the outbox failed at its first
    messages, its journal grown to 266 kB with nothing queued (SQLite's default lets it reach
    4 MB before it starts over)."""
    outbox = disk(tmp_path, max_messages=100_000, max_bytes=10**9)
    wal = tmp_path / "outbox.sqlite-wal"
    largest = 0
    for n in range(1500):  # 2.2 MB of payload, taken and acknowledged as it comes
        outbox.put(message(n, size=1500))
        for key, _ in outbox.take(5):
            outbox.ack(key)
        largest = max(largest, wal.stat().st_size)
    assert outbox.depth == 0
    assert largest <= outbox_module.WAL_SIZE_LIMIT + 2 * 4096 * outbox_module.WAL_CHECKPOINT_PAGES
    assert largest < 1.5 * 1024 * 1024, largest
    outbox.close()


def test_sync_fsyncs_the_wal(tmp_path):
    outbox = disk(tmp_path)
    outbox.put(message(1))
    outbox.sync()
    assert os.path.exists(f"{outbox.path}-wal")
    outbox.close()
