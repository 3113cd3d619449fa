"""Two daemons given one device_id (a cloned device's config, a trial run beside the service):
the one that started later gives way with exit 2, the first keeps the device's topics."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.mqtt.rivals import CONFIRM_WITHIN_S, RivalWatch
from tests.mqtt_watch import Watcher, retained_status
from tests.test_daemon_mqtt import PREFIX, start_daemon, stop, write_config

OWN = {"host": "gate-a", "started_at": "2026-12-05T10:00:00.000Z"}


def status(host: str = "gate-b", started_at: str = "2026-12-05T10:05:00.000Z",
           state: str = "online") -> bytes:
    return json.dumps({"state": state, "host": host, "started_at": started_at}).encode()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_live_status_of_another_daemon_is_a_rival_at_once_and_said_once():
    watch = RivalWatch(OWN)
    rival = watch.offer(status(), retained=False)
    assert rival is not None and (rival.host, rival.came_first) == ("gate-b", False)
    assert watch.gives_way_to is None  # it came later: this one keeps running
    assert watch.offer(status(), retained=False) is None  # confirmed once
    # a service meets every trial run beside it, each in turn (a user check: after the
    # first, the others ran unnoticed)
    again = watch.offer(status(started_at="2026-12-05T10:09:00.000Z"), retained=False)
    assert again is not None and not again.came_first and not again.taken_over
    assert "share a client id" not in again.describe("edge/gate")
    trial = RivalWatch(OWN)
    earlier = trial.offer(status(started_at="2026-12-05T09:00:00.000Z"), False)
    assert earlier is not None and earlier.came_first and trial.gives_way_to == earlier
    # one start to the millisecond: the host names break the tie, the same way on both
    tie = RivalWatch(OWN).offer(status(started_at=OWN["started_at"]), False)
    assert tie is not None and not tie.came_first  # "gate-a" < "gate-b"
    # starts compared as moments, not as text ("...00Z" sorts after "...00.500Z")
    whole = RivalWatch({"host": "gate-a", "started_at": "2026-12-05T10:00:00.500Z"})
    first = whole.offer(status(started_at="2026-12-05T10:00:00Z"), False)
    assert first is not None and first.came_first
    lower = RivalWatch(OWN).offer(status(started_at="2026-12-05t09:00:00z"), False)
    assert lower is not None and lower.came_first  # RFC 3339 lets t and z be lower case


@pytest.mark.parametrize("payload", [
    status(host=OWN["host"], started_at=OWN["started_at"]),  # its own echo
    status(state="offline"), status(state="stopped"), status(state="failed"),  # going, gone
    b"not json", b"[1]", b"", json.dumps({"state": "online"}).encode(),  # no host or start
    # a user check: a status published by hand with a malformed start, "2026-12-05 10:00:00"
    # sorting before the daemon's own, made it give way (exit 2) to a daemon that did not exist
    status(started_at="2026-12-05 09:00:00"), status(started_at="yesterday"),
    status(started_at="2026-12-05T09:00:00"), status(started_at="2026-12-05T09:00:00+01:00"),
    json.dumps({"state": "online", "host": "gate-b"}).encode(),  # a host and no start
])
def test_what_is_no_rival_said_live(payload):
    watch = RivalWatch(OWN)
    assert watch.offer(payload, retained=False) is None and watch.gives_way_to is None


def test_a_retained_status_is_a_rival_found_at_two_connects_with_a_short_session():
    """A takeover: at each connect the other's Last Will (`offline`, the broker dropping it)
    is found retained, and this daemon's sessions end soon after they begin. A status an
    ended run left is found at one connect only, with or without short sessions."""
    clock = Clock()
    watch = RivalWatch(OWN, clock)
    will = status(state="offline")
    assert watch.offer(will, retained=True) is None  # once: what an ended run leaves
    watch.short_session_lost()
    assert watch.offer(status(host="gate-c"), retained=True) is None  # another, once
    rival = watch.offer(will, retained=True)
    assert rival is not None and rival.host == "gate-b" and rival.taken_over
    assert "they share a client id, so the broker drops one connection" in \
        rival.describe("edge/gate")
    # found twice, but the short session too long before: a network fault, long ago
    slow = RivalWatch(OWN, clock)
    slow.short_session_lost()
    slow.offer(will, retained=True)
    clock.now += CONFIRM_WITHIN_S + 1
    assert slow.offer(will, retained=True) is None
    # found twice without a short session: a broker that restored an old state, say
    steady = RivalWatch(OWN, clock)
    assert steady.offer(will, True) is None and steady.offer(will, True) is None


def test_without_its_own_host_and_start_nothing_is_watched():
    watch = RivalWatch({"state": "offline"})
    assert not watch.enabled and watch.offer(status(), retained=False) is None


def second_config(tmp_path: Path, demo_model: Path, port: int, client_id: str | None) -> Path:
    folder = tmp_path / "second"
    folder.mkdir()
    config = write_config(folder, demo_model, port, seed=3)
    if client_id is not None:
        config.write_text(config.read_text().replace(
            "[mqtt]\n", f'[mqtt]\nclient_id = "{client_id}"\n'))
    return config


@pytest.mark.slow
@pytest.mark.parametrize("client_id", [None, "edge-test-gate-trial"],
                         ids=["one-client-id", "own-client-ids"])
def test_the_later_of_two_daemons_with_one_device_id_gives_way(tmp_path, demo_model,
                                                              mosquitto, client_id):
    """A user check: a 3 s trial beside the running service, one config: each knocked the
    other off the broker every 2 s, both logging a network fault, and the trial's stop set
    `stopped` for the device that still ran. Now the trial exits 2 naming the other daemon,
    sends no final status, and the service keeps running, its status `online`; with client
    ids of their own (no takeover), the same."""
    first = start_daemon(write_config(tmp_path, demo_model, mosquitto.port))
    try:
        with Watcher(mosquitto.port, f"{PREFIX}/status") as watcher:
            watcher.wait_for(lambda: any(m.json()["state"] == "online" for m in
                                         watcher.messages), 30, "the first daemon online")
        own = retained_status(mosquitto.port, PREFIX)
        config = second_config(tmp_path, demo_model, mosquitto.port, client_id)
        for _ in range(2):  # a user check: a second trial, once the first was told, ran on
            trial = subprocess.run([sys.executable, "-m", "edge", "run", "--config",
                                    str(config), "--seconds", "20"],
                                   capture_output=True, text=True, timeout=90)
            assert trial.returncode == 2, trial.stderr
            assert "Traceback" not in trial.stderr
            assert (f"exiting 2, not to be restarted: another edge daemon publishes as this "
                    f"device, under {PREFIX}/ (host {own['host']!r}, started "
                    f"{own['started_at']}, before this one)") in trial.stderr, trial.stderr
            assert "give each device its own device_id" in trial.stderr
            assert ("share a client id" in trial.stderr) == (client_id is None), trial.stderr
            time.sleep(5)  # the first sets its retained values again (RECLAIM_AFTER_S)
            after = retained_status(mosquitto.port, PREFIX)
            assert (after["state"], after["started_at"]) == ("online", own["started_at"]), \
                after
            # the trial's camera ended as it stopped: the first's streams, as it said again
            assert retained_status(mosquitto.port, f"{PREFIX}/gate")["state"] == "streaming"
        assert first.poll() is None  # still running
    finally:
        code, err = stop(first, signal.SIGTERM)
    assert code == 0, err
    assert err.count("after this one): each overwrites") == 2, err  # each trial, once
    assert "it is told so and stops" in err
    assert retained_status(mosquitto.port, PREFIX)["state"] == "stopped"
