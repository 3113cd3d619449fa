"""The cost of tracking, events and counts: 1-camera `edge run` FPS with tracking on vs off.

    python benchmarks/bench_tracking.py [--rounds 3] [--seconds 8] [--threads 1] [--json]

The camera replays 128 scene frames from memory as fast as the loop takes them, never rendering
or dropping a frame nobody reads (`replay://`), so the daemon's FPS is its throughput. Runs
alternate on/off so that load from elsewhere on the machine hits both alike; reported are the
medians of the FPS, their ratio, the daemon's CPU time per frame (user + system, from the
kernel, start-up included) and the median per-frame `track` stage (tracker, events, counts and
their messages; the frame copy for snapshots is outside it but inside the FPS and CPU time)
taken from every detections message's `latency_ms`.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from edge.broker import LocalMosquitto, mosquitto_binary
from edge.client import DetectionsMessage, Message, Subscriber
from edge.demo import bundled_model


def config_text(model: Path, url: str, tracking: bool, threads: int) -> str:
    return (f'device_id = "bench"\n[model]\npath = "{model}"\nthreads = {threads}\n'
            f'[[cameras]]\nname = "cam"\nsource = "replay://shapes?frames=300&seed=1"\n'
            f'[mqtt]\nurl = "{url}"\n[frames]\ninterval_s = 10.0\n'
            f"[tracking]\nenabled = {'true' if tracking else 'false'}\n")


def run_once(url: str, tracking: bool, seconds: float, threads: int) -> dict[str, float]:
    costs: list[float] = []
    lock = threading.Lock()

    def collect(message: Message) -> None:
        if isinstance(message.payload, DetectionsMessage):
            with lock:
                costs.append(message.payload.latency_ms.get("track", 0.0))

    with Subscriber(url, "edge/bench", ["detections"], callback=collect) as watcher, \
            tempfile.TemporaryDirectory() as folder:
        watcher.wait_subscribed(10)
        config = Path(folder) / "edge.toml"
        config.write_text(config_text(bundled_model(), url, tracking, threads))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = subprocess.run([sys.executable, "-m", "edge", "--log-level", "WARNING", "run",
                              "--config", str(config), "--seconds", str(seconds), "--json"],
                             capture_output=True, text=True, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"fps": float(summary["fps"]), "cpu_ms_per_frame": cpu / summary["frames"] * 1e3,
            "track_ms_p50": statistics.median(costs) if costs else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=1, help="inference threads")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    binary = mosquitto_binary()
    if binary is None:
        sys.exit("this benchmark needs Mosquitto (apt-get install -y mosquitto)")
    broker = LocalMosquitto(binary).start()
    runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    try:
        for _ in range(args.rounds):
            for tracking in (False, True):
                runs[tracking].append(run_once(broker.url, tracking, args.seconds, args.threads))
    finally:
        broker.stop()
    off = statistics.median(r["fps"] for r in runs[False])
    on = statistics.median(r["fps"] for r in runs[True])
    cpu_off = statistics.median(r["cpu_ms_per_frame"] for r in runs[False])
    cpu_on = statistics.median(r["cpu_ms_per_frame"] for r in runs[True])
    result: dict[str, Any] = {
        "fps_tracking_off": round(off, 2), "fps_tracking_on": round(on, 2),
        "fps_ratio": round(on / off, 3) if off else None,
        "cpu_ms_per_frame_off": round(cpu_off, 3), "cpu_ms_per_frame_on": round(cpu_on, 3),
        "cpu_ratio": round(cpu_on / cpu_off, 3),
        "track_ms_p50": round(statistics.median(r["track_ms_p50"] for r in runs[True]), 3),
        "rounds": args.rounds, "seconds": args.seconds,
        "fps_runs": {"off": [r["fps"] for r in runs[False]], "on": [r["fps"] for r in runs[True]]}}
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:18s} {value}")


if __name__ == "__main__":
    main()
