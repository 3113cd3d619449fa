"""`edge monitor`: watch devices' topics from anywhere — status, detections, stats, frames."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.demo import format_detections
from edge.errors import EdgeError, InputError
from edge.mqtt.subscriber import TopicSubscriber


def format_status(topic: str, status: dict[str, Any]) -> str:
    device = topic.rsplit("/", 2)[-2]
    return (f"[{device}] {status.get('state', '?')}: model {status.get('model', '?')} on "
            f"{status.get('backend', '?')}, cameras {', '.join(status.get('cameras', []))}, "
            f"since {status.get('started_at', '?')}")


def format_stats(topic: str, stats: dict[str, Any]) -> str:
    device = topic.rsplit("/", 2)[-2]
    cameras = []
    for name, camera in stats.get("cameras", {}).items():
        infer = camera.get("latency_ms", {}).get("infer", {}).get("p50", "?")
        cameras.append(f"{name} {camera.get('fps', 0):.1f} fps, infer p50 {infer} ms, "
                       f"dropped {camera.get('dropped', 0)}")
    mqtt = stats.get("mqtt", {})
    return (f"[{device}] stats: {'; '.join(cameras) or 'no cameras'}; outbox "
            f"{mqtt.get('outbox_depth', '?')}, memory {stats.get('memory_rss_mb', '?')} MB, "
            f"up {stats.get('uptime_s', '?')} s")


class FrameSaver:
    """Writes received JPEG frames to `folder/<device>/<camera>/<n>.jpg`."""

    def __init__(self, folder: Path) -> None:
        if not folder.parent.is_dir():
            raise InputError(f"--frames folder's parent {folder.parent} does not exist")
        self.folder = folder
        self.saved = 0

    def __call__(self, topic: str, jpeg: bytes) -> None:
        parts = topic.split("/")
        target = self.folder.joinpath(parts[-3], parts[-2])
        target.mkdir(parents=True, exist_ok=True)
        self.saved += 1
        (target / f"{self.saved:06d}.jpg").write_bytes(jpeg)


def run_monitor(url: str, prefix: str, seconds: float | None, frames: Path | None,
                echo: Callable[[str], None] = print,
                stop: threading.Event | None = None) -> dict[str, Any]:
    counts: Counter[str] = Counter()

    def counted(kind: str, show: Callable[[str, dict[str, Any]], str] | None
                ) -> Callable[[str, dict[str, Any]], None]:
        def handle(topic: str, payload: dict[str, Any]) -> None:
            counts[kind] += 1
            if show is not None:
                echo(show(topic, payload))
        return handle

    saver = FrameSaver(frames) if frames is not None else None

    def on_frame(topic: str, jpeg: bytes) -> None:
        counts["frame"] += 1
        if saver is not None:
            saver(topic, jpeg)

    subscriber = TopicSubscriber(
        url, prefix, counted("detections", lambda t, p: format_detections(p)),
        on_status=counted("status", format_status), on_stats=counted("stats", format_stats),
        on_frame=on_frame, on_frame_meta=counted("frame/meta", None),
        client_id=f"edge-monitor-{int(time.time() * 1000) % 1_000_000}")
    subscriber.start()
    stop = stop or threading.Event()
    try:
        if not subscriber.subscribed.wait(10.0):
            raise EdgeError(f"could not reach the MQTT broker at {url}; check --mqtt")
        stop.wait(seconds)
    except KeyboardInterrupt:
        pass
    finally:
        subscriber.stop()
    return {"messages": dict(counts), "malformed": subscriber.malformed,
            "frames_saved": saver.saved if saver else 0}
