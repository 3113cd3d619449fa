"""Store-and-forward with a real `edge run`, a real Mosquitto and the SQLite disk outbox: a
SIGKILL during a broker outage loses nothing, and every stop accounts for every detection."""

from __future__ import annotations

import itertools
import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.mqtt_watch import Watcher

PREFIX = "edge/saf"


def write_config(tmp_path: Path, model: Path, port: int, outbox: str) -> Path:
    config = tmp_path / "edge.toml"
    config.write_text(f"""
device_id = "saf"
[model]
path = "{model}"
threads = 1
[[cameras]]
name = "gate"
source = "synthetic://shapes?fps=10&seed=3"
[mqtt]
url = "mqtt://127.0.0.1:{port}"
reconnect_min_s = 0.5
reconnect_max_s = 1
outbox = "{outbox}"
{'outbox_path = "state/outbox.sqlite"' if outbox == "disk" else ""}
flush_timeout_s = 1
[frames]
interval_s = 0
""")
    return config


def start_daemon(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "edge", "run", "--json", "--config",
                             str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def queued_rows(database: Path) -> list[dict[str, float]]:
    """The detection messages in the outbox (events and counts go through it too), oldest
    first, read as another process would."""
    if not database.exists():
        return []
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        try:
            rows = db.execute("SELECT payload FROM outbox WHERE topic LIKE '%/detections' "
                              "ORDER BY id").fetchall()
        except sqlite3.OperationalError:  # created, its table not yet
            return []
    return [json.loads(payload) for (payload,) in rows]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def summary_of(process: subprocess.Popen[bytes]) -> tuple[dict[str, int], str]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1]), err.decode()


@pytest.mark.slow
def test_sigkill_during_an_outage_loses_no_detection(tmp_path, stopped_mosquitto, demo_model):
    config = write_config(tmp_path, demo_model, stopped_mosquitto.port, "disk")
    database = tmp_path / "state" / "outbox.sqlite"
    daemon = start_daemon(config)
    try:
        wait_for(lambda: len(queued_rows(database)) >= 30, 60, "30 queued detections")
    finally:
        killed_at = time.time()
        daemon.kill()
        daemon.communicate(timeout=10)
    before = queued_rows(database)
    stamps = [m["ts"] for m in before]
    assert [m["frame_id"] for m in before] == sorted({m["frame_id"] for m in before})
    # every frame up to the kill is there: no gap longer than a few frame periods, up to the end
    # (10 frames a second; 2 s leaves room for a CPU shared with other tests)
    assert max(b - a for a, b in itertools.pairwise(stamps)) < 2.0, stamps
    assert killed_at - stamps[-1] < 2.0, (killed_at, stamps[-1])

    stopped_mosquitto.start()
    with Watcher(stopped_mosquitto.port, f"{PREFIX}/gate/detections") as watcher:
        daemon = start_daemon(config)
        try:
            wait_for(lambda: len(watcher.messages) >= len(before) + 10, 60,
                     "the queued detections and new ones")
        finally:
            summary, log = summary_of(daemon)
    received = [m.json() for m in watcher.messages]
    assert [m["ts"] for m in received[:len(before)]] == stamps, "in order, first"
    assert all(m["ts"] > killed_at for m in received[len(before):])
    recovered = re.search(r"holds (\d+) messages from an earlier run", log)
    assert recovered is not None and int(recovered.group(1)) >= len(before), log
    assert summary["produced"] == summary["published"] + summary["queued"] + summary["dropped"]
    assert summary["produced"] >= len(before) + 10 and summary["dropped"] == 0
    # the summary says how much of what it produced came from the run before
    assert summary["recovered"] == int(recovered.group(1))
    assert f"{summary['produced']} produced ({summary['recovered']} from an earlier run) = " in log


@pytest.mark.slow
@pytest.mark.parametrize("outbox", ["memory", "disk"])
def test_sigterm_during_an_outage_accounts_for_every_detection(tmp_path, stopped_mosquitto,
                                                               demo_model, outbox):
    config = write_config(tmp_path, demo_model, stopped_mosquitto.port, outbox)
    daemon = start_daemon(config)
    time.sleep(6)
    stopping = time.monotonic()
    summary, log = summary_of(daemon)
    assert time.monotonic() - stopping < 10, "flush_timeout_s = 1 bounds the stop"
    assert summary["produced"] > 0 and summary["published"] == 0
    assert summary["produced"] == summary["published"] + summary["queued"] + summary["dropped"]
    if outbox == "memory":
        assert (summary["queued"], summary["dropped"]) == (0, summary["produced"])
        assert f"{summary['produced']} messages were not delivered before stopping and are " \
               "dropped" in log
    else:
        assert (summary["queued"], summary["dropped"]) == (summary["produced"], 0)
        assert len(queued_rows(tmp_path / "state" / "outbox.sqlite")) <= summary["queued"]
        assert "for the next start" in log
    assert f"{summary['produced']} produced = 0 published + {summary['queued']} queued + " \
           f"{summary['dropped']} dropped" in log
    failures = [line for line in log.splitlines() if "failed attempt" in line]
    assert len(failures) == 1 and "connection refused" in failures[0]  # logged, once


@pytest.mark.slow
def test_a_full_disk_at_run_time_falls_back_to_memory_and_says_so_once(tmp_path,
                                                                         stopped_mosquitto,
                                                                         demo_model):
    """The file-size limit makes every write past 256 KB fail as on a full disk."""
    config = write_config(tmp_path, demo_model, stopped_mosquitto.port, "disk")

    limited = ("import resource, sys; from edge.cli import main; "
               "resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024)); "
               "sys.exit(main(sys.argv[1:]))")
    daemon = subprocess.Popen([sys.executable, "-c", limited, "run", "--json", "--config",
                               str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    database = tmp_path / "state" / "outbox.sqlite"
    wait_for(lambda: len(queued_rows(database)) >= 10, 60, "detections on disk")
    time.sleep(12)  # 4 KB of WAL per message: the limit is reached within seconds
    summary, log = summary_of(daemon)
    failures = [line for line in log.splitlines() if "disk outbox" in line and "failed" in line]
    assert len(failures) == 1 and "kept in memory from now on" in failures[0], log
    on_disk = len(queued_rows(database))
    assert summary["produced"] == summary["published"] + summary["queued"] + summary["dropped"]
    assert summary["queued"] >= on_disk > 0, "what reached the disk stays for the next start"
    assert summary["dropped"] > 0, "what only memory held is dropped at stop, and counted"
