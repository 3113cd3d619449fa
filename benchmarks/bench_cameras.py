"""`edge run` with 1 camera vs N cameras: peak memory and capture-to-publish latency.

    python benchmarks/bench_cameras.py [--cameras 4] [--seconds 20] [--fps 15] [--json]
                                       [--edge .venv/bin/edge] [--model MODEL.onnx]

Each configuration runs as its own `edge run` process against a private Mosquitto; its peak RSS
comes from the kernel (the child's ru_maxrss), its latency from the `latency_ms.total` of every
detections message a subscriber receives (capture to publish, in the daemon's own clock).
Reported: the ratio of N cameras' peak RSS to one camera's, and both p50 latencies. `--edge`
runs another checkout's `edge` (e.g. an older commit in a git worktree) for a before/after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.broker import LocalMosquitto, mosquitto_binary
from edge.demo import bundled_model


def config_text(model: Path, cameras: int, fps: float, url: str) -> str:
    lines = ['device_id = "bench"', "[model]", f'path = "{model}"', "[mqtt]", f'url = "{url}"',
             "[frames]", "interval_s = 10.0"]
    for i in range(cameras):
        lines += ["[[cameras]]", f'name = "cam{i}"',
                  f'source = "synthetic://shapes?fps={fps}&seed={i + 1}"']
    return "\n".join(lines) + "\n"


class LatencyListener:
    """Collects latency_ms.total of every detections message."""

    def __init__(self, port: int) -> None:
        self.totals: list[float] = []
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self._client.on_connect = lambda c, *_: c.subscribe("edge/bench/+/detections", qos=1)
        self._client.on_message = self._message
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def _message(self, client: Any, userdata: Any, message: Any) -> None:
        total = json.loads(message.payload)["latency_ms"]["total"]
        with self._lock:
            self.totals.append(float(total))

    def stop(self) -> list[float]:
        self._client.loop_stop()
        self._client.disconnect()
        return self.totals


def run_once(edge: str, model: Path, cameras: int, fps: float, seconds: float) -> dict[str, Any]:
    binary = mosquitto_binary()
    if binary is None:
        sys.exit("this benchmark needs Mosquitto (apt-get install -y mosquitto)")
    broker = LocalMosquitto(binary).start()
    listener = LatencyListener(broker.port)
    try:
        with tempfile.TemporaryDirectory() as folder:
            config = Path(folder) / "edge.toml"
            config.write_text(config_text(model, cameras, fps, broker.url))
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            process = subprocess.run(
                [edge, "--log-level", "WARNING", "run", "--config", str(config), "--seconds",
                 str(seconds), "--json"], capture_output=True, text=True, check=False,
                env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "")})
            peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    finally:
        totals = listener.stop()
        broker.stop()
    if process.returncode != 0:
        sys.exit(f"edge run failed ({process.returncode}): {process.stderr[-2000:]}")
    summary = json.loads(process.stdout.strip().splitlines()[-1])
    # ru_maxrss of children is the largest single child so far: runs go from small to large.
    if peak_kib <= before:
        print("warning: this run's peak RSS did not exceed an earlier one's", file=sys.stderr)
    return {"cameras": cameras, "frames": summary["frames"], "fps": summary["fps"],
            "peak_rss_mb": round(peak_kib / 1024, 1),
            "latency_total_p50_ms": round(statistics.median(totals), 2) if totals else None,
            "messages": len(totals)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--edge", default=str(Path(sys.executable).parent / "edge"))
    parser.add_argument("--model", type=Path, default=bundled_model())
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    one = run_once(args.edge, args.model, 1, args.fps, args.seconds)
    many = run_once(args.edge, args.model, args.cameras, args.fps, args.seconds)
    result = {"one": one, "many": many,
              "rss_ratio": round(many["peak_rss_mb"] / one["peak_rss_mb"], 3)}
    if args.json:
        print(json.dumps(result))
    else:
        for row in (one, many):
            print(f"{row['cameras']} camera(s): {row['fps']} FPS, peak RSS {row['peak_rss_mb']} "
                  f"MB, p50 capture-to-publish {row['latency_total_p50_ms']} ms "
                  f"({row['messages']} messages)")
        print(f"peak RSS ratio {args.cameras} cameras / 1 camera: {result['rss_ratio']}")


if __name__ == "__main__":
    main()
