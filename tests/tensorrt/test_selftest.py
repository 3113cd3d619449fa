"""The hardware selftest's daemon run, on the CPU: the same code a Jetson owner runs with
backend tensorrt, here with ONNX Runtime and a real Mosquitto."""

from __future__ import annotations

import json
import subprocess
import sys

from edge.demo import bundled_model
from edge.selftest import CAMERA_SEEDS, _checks, daemon_scores


def test_daemon_run_scores_both_cameras(mosquitto):
    scores = daemon_scores(bundled_model(), "onnxruntime", 4.0, mosquitto.url)
    assert scores["backend"] == "onnxruntime" and scores["failure"] is None
    assert scores["frames"] > 10 and all(n > 5 for n in scores["messages"].values()), scores
    assert set(scores["recall"]) == {f"cam{i}" for i in range(len(CAMERA_SEEDS))}
    assert all(value > 0.5 for value in scores["recall"].values()), scores
    assert all(value > 0.5 for value in scores["precision"].values()), scores


def test_checks_name_what_failed():
    daemon = {"backend": "tensorrt", "failure": None, "frames": 90,
              "messages": {"cam0": 45, "cam1": 45}, "recall": {"cam0": 0.9, "cam1": 0.7}}
    result = {"map50_onnxruntime_fp32": 0.9, "map50_tensorrt_int8": 0.89,
              "engine_precision": "int8", "corrupted_engine_rebuilt": True,
              "daemon_tensorrt": daemon,
              "daemon_onnxruntime_fp32": daemon | {"recall": {"cam0": 0.9, "cam1": 0.9}},
              "map50_tensorrt_int8_from_cache": 0.7, "cache_engine_built": True}
    checks = _checks(result)
    assert checks["int8_map_close_to_fp32"] and checks["corrupted_engine_rebuilt"]
    assert checks["daemon_ran_on_tensorrt"] and checks["daemon_fp32_reference_ran"]
    assert not checks["daemon_recall_close_to_fp32"]  # cam1 lost 0.2
    assert not checks["cache_engine_close_to_fp32"]


def test_selftest_without_tensorrt_is_exit_2_one_line():
    result = subprocess.run([sys.executable, "-m", "edge", "selftest", "--hardware", "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "TensorRT" in result.stderr and result.stderr.count("\n") == 1  # one line
    # --json's one line says why, for `| tail -n 1 > selftest.json`
    assert json.loads(result.stdout)["passed"] is False
