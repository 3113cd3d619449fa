from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge.demo import run_demo


@pytest.mark.slow
def test_demo_with_embedded_broker_scores_against_ground_truth():
    lines: list[str] = []
    summary = run_demo(seconds=8, seed=3, fps=10, threads=1, echo=lines.append)
    assert summary.frames >= 40
    assert summary.published == summary.received > 0
    assert summary.precision >= 0.9 and summary.recall >= 0.9
    assert summary.broker == "embedded"
    assert len(lines) == summary.received and "demo frame" in lines[0]


@pytest.mark.slow
def test_demo_cli_json_against_mosquitto(mosquitto):
    result = subprocess.run(
        [sys.executable, "-m", "edge", "demo", "--seconds", "5", "--fps", "10", "--threads", "1",
         "--mqtt", mosquitto.url, "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"frames", "fps", "published", "received", "precision", "recall"} <= set(summary)
    assert summary["received"] == summary["published"] > 0
    assert summary["precision"] >= 0.9 and summary["recall"] >= 0.9


def test_demo_with_an_unreachable_broker_exits_2():
    result = subprocess.run(
        [sys.executable, "-m", "edge", "demo", "--seconds", "1", "--mqtt", "mqtt://127.0.0.1:9"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "could not reach the MQTT broker" in result.stderr
