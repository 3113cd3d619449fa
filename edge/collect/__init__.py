"""`edge collect`: sampled frames from one device or a fleet -> a dataset for labelling.

Subscribes to `<prefix>/+/frame`, `frame/clean` and `frame/meta` (prefix may hold `+`, e.g.
`edge/+` for every device), and to the retained statuses: under the prefix, they show which
devices are there; one level up and beside the device a prefix names, a prefix a level off (a
level added or the device level left out) or a device that is not there. A prefix a level off
ends the run with its fix, as `edge monitor`'s does, rather than a quiet empty dataset.
A device publishes a sample's JPEG(s) before its meta on one connection, so the meta pairs with
the latest JPEG of its camera; the sizes in the meta confirm the pair (a frame lost on the way,
QoS 0, leaves a mismatch that is counted and skipped).
Writing happens on one worker thread, off paho's network thread.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from typing import Any

from edge.client.contract import (
    PayloadError,
    level_check_filters,
    misplaced_prefix,
    names_one_device,
    parse_message,
)
from edge.client.models import DeviceStatus
from edge.collect.dataset import CollectCounts, CollectedDataset, DiskFullError, Sample
from edge.concurrency import StopRequest
from edge.errors import EdgeError, InputError
from edge.missing_jpegs import MissingJpegs
from edge.mqtt.silence import the_devices_beside
from edge.mqtt.subscriber import (
    CONNECT_TIMEOUT_S,
    NO_TLS_FILES,
    BrokerSubscription,
    TlsFiles,
    check_device_prefix,
    unique_client_id,
)

log = logging.getLogger(__name__)

#: How often the writer, waiting for samples, checks whether the exports are due (seconds).
EXPORT_CHECK_S = 1.0

#: Seconds after connecting with no sampled frame before a warning that the prefix may match
#: nothing (devices sample one frame every 10 s by default).
NO_FRAMES_WARNING_S = 60.0

__all__ = ["CollectCounts", "CollectedDataset", "Collector", "DiskFullError", "Sample"]


class Collector:
    """Feeds a `CollectedDataset` from the broker until stopped or the disk allowance is reached."""

    def __init__(self, url: str, prefix: str, dataset: CollectedDataset,
                 client_id: str = "", tls: TlsFiles = NO_TLS_FILES) -> None:
        """`client_id`: default a unique `edge-collect-...`, so collectors on one broker never
        take each other's session over."""
        self.dataset = dataset
        self.prefix = check_device_prefix(prefix)
        self.url = url
        self._jpeg: dict[tuple[str, str, str], bytes] = {}  # (device, camera, kind) -> latest
        self._queue: queue.Queue[Sample | None] = queue.Queue(maxsize=256)
        self.unpaired = 0
        self.missing = MissingJpegs("edge collect")
        self.received = 0
        self.devices: dict[str, str] = {}  # device -> the state its retained status says
        #: devices beside the one a prefix names (`edge/gate-02` while only gate-01 is
        #: there), named when nothing comes: device -> its state
        self.beside: dict[str, str] = {}
        self.error: EdgeError | None = None
        self.stopped = threading.Event()
        filters = [(f"{prefix}/+/frame", 0), (f"{prefix}/+/frame/clean", 0),
                   (f"{prefix}/+/frame/meta", 0), (f"{prefix}/status", 0),
                   (f"{prefix}/+/status", 0)]
        filters += [(check, 0) for check in level_check_filters(prefix)]
        if names_one_device(prefix):
            filters.append((f"{prefix.rpartition('/')[0]}/+/status", 0))
        self.subscription = BrokerSubscription(
            url, filters, self._message, client_id=client_id or unique_client_id("collect"),
            ca_file=tls.ca_file, certfile=tls.certfile, keyfile=tls.keyfile,
            log_first_failure=False)
        self._worker = threading.Thread(target=self._write_loop, name="collect-writer",
                                        daemon=True)

    def start(self) -> None:
        self._worker.start()
        self.subscription.start()

    def stop(self) -> None:
        self.subscription.stop()
        self._queue.put(None)
        self._worker.join()
        try:
            self.dataset.export()
        except DiskFullError:
            if self.error is None:
                raise
            log.warning("the exports in %s could not be refreshed on the full disk; "
                        "manifest.jsonl lists every complete image", self.dataset.root)
        finally:
            self.dataset.close()

    def run(self, seconds: float | None, stop: StopRequest,
            on_connected: Callable[[], None] = lambda: None,
            connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Collect until `seconds` pass, `stop` is set, or the disk is full (then raises);
        EdgeError when the broker cannot be reached within `connect_timeout_s` (afterwards
        the subscription reconnects on its own)."""
        self.start()
        began = time.monotonic()
        try:
            self.subscription.wait_until_subscribed(connect_timeout_s)
            on_connected()
            connected = time.monotonic()
            warned = False
            while not stop.is_set() and not self.stopped.is_set():
                now = time.monotonic()
                if seconds is not None and now - began >= seconds:
                    break
                if not warned and not self.received and now - connected >= NO_FRAMES_WARNING_S:
                    warned = True
                    log.warning(self._nothing_under_the_prefix(now - connected))
                stop.wait(0.1)
            if not warned and not self.received and self.error is None:
                log.warning(self._nothing_under_the_prefix(time.monotonic() - connected))
        finally:
            self.stop()
        if self.error is not None:
            raise self.error

    def _nothing_under_the_prefix(self, seconds: float) -> str:
        """A prefix that names a camera or a topic, or a device that is not there, is a valid
        filter that matches nothing: said, rather than an empty dataset and exit 0."""
        if self.devices:
            there = ", ".join(f"{device} ({state})"
                              for device, state in sorted(self.devices.items()))
            return (f"no sampled frame came under {self.prefix} in {seconds:.0f} s, though its "
                    f"devices are there: {there}; check that they sample frames "
                    "(frames.interval_s or [sampling] in their config) and run, that "
                    "[sampling.limits] leaves room (their stats' sampling `refused` and "
                    "`over_budget` count samples the caps held back), and that the broker's "
                    f"ACL lets this user read {self.prefix}/+/frame and frame/meta (Mosquitto "
                    "hides what a client may not read without a word)")
        if self.beside:
            return (f"no sampled frame came under {self.prefix} in {seconds:.0f} s and no "
                    f"device's status is there; {the_devices_beside(self.prefix, self.beside)}")
        return (f"no sampled frame came under {self.prefix} in {seconds:.0f} s (its topics "
                f"are {self.prefix}/<camera>/frame/meta); check that --prefix names devices "
                "(edge/+ for every one, edge/<device> for one, not a camera or a topic) and "
                "that they sample frames (frames.interval_s or [sampling] in their config)")

    def summary(self) -> dict[str, Any]:
        return {"out": str(self.dataset.root), "images": len(self.dataset.rows),
                **asdict(self.dataset.counts), "received": self.received,
                "unpaired": self.unpaired, "labels": self.dataset.labels or []}

    # -- paho's thread ---------------------------------------------------------------------

    def _message(self, topic: str, payload: bytes, retained: bool) -> None:
        if not payload:  # a retained frame being cleared, not a frame
            return
        if topic.endswith("/status"):
            self._status(topic, payload)
            return
        kind = next(k for k in ("/frame/meta", "/frame/clean", "/frame") if topic.endswith(k))
        device_prefix, _, camera = topic[:-len(kind)].rpartition("/")
        device = device_prefix.rpartition("/")[2] or device_prefix
        if kind != "/frame/meta":
            self._jpeg[(device, camera, kind)] = payload
            self.missing.jpeg_came(device, camera)
            return
        try:
            meta = json.loads(payload)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's stack
            meta = None
        if not isinstance(meta, dict):
            self.unpaired += 1
            return
        self.received += 1
        jpeg = self._pair(device, camera, meta)
        if jpeg is None:
            self.unpaired += 1
            if not any(key[:2] == (device, camera) for key in self._jpeg):
                self.missing.meta_alone(device, camera, topic.removesuffix("/meta"))
            return
        try:
            self._queue.put_nowait(Sample(device, camera, jpeg, meta))
        except queue.Full:
            self.unpaired += 1
            log.warning("the dataset writer is behind; a sample from %s/%s was dropped",
                        device, camera)

    def _status(self, topic: str, payload: bytes) -> None:
        """A device's status names it as present; one that reads right only under a prefix a
        level deeper or shallower stops the run with the fix."""
        # a status beside the device the prefix names is read as its parent's `+` has it
        beside = (names_one_device(self.prefix) and not topic.startswith(f"{self.prefix}/")
                  and topic.count("/") == self.prefix.count("/") + 1)
        try:
            message = parse_message(f"{self.prefix.rpartition('/')[0]}/+" if beside
                                    else self.prefix, topic, payload)
        except PayloadError:
            misplaced = misplaced_prefix(self.prefix, topic, payload)
            if misplaced is not None and self.error is None:
                self.error = InputError(f"--prefix {self.prefix}: {misplaced}")
                self.stopped.set()
            return
        if not isinstance(message.payload, DeviceStatus):
            return
        if not beside:
            self.devices[message.device] = message.payload.state
        else:
            self.beside[message.device] = message.payload.state

    def _pair(self, device: str, camera: str, meta: dict[str, Any]) -> bytes | None:
        """The clean JPEG this meta describes, or None."""
        if meta.get("detections_drawn"):
            jpeg = self._jpeg.pop((device, camera, "/frame/clean"), None)
            wanted = meta.get("clean_bytes")
        else:
            jpeg = self._jpeg.pop((device, camera, "/frame"), None)
            wanted = meta.get("bytes")
        if jpeg is None or len(jpeg) != wanted:
            return None
        return jpeg

    # -- writer thread ---------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            try:
                sample = self._queue.get(timeout=EXPORT_CHECK_S)
            except queue.Empty:  # a pause between samples: export those added, when due
                self._writing(self.dataset.export_if_due, "refresh the exports")
                continue
            if sample is None:
                return
            self._writing(partial(self.dataset.add, sample),
                          f"add frame {sample.meta.get('frame_id')} of {sample.device}/"
                          f"{sample.camera} to the dataset")

    def _writing(self, write: Callable[[], object], what: str) -> None:
        """Run `write` unless the disk is full already; a full disk stops the collection."""
        if self.error is not None:
            return
        try:
            write()
        except DiskFullError as exc:
            self.error = exc
            self.stopped.set()
        except Exception:  # thread boundary: one bad message must not end the collection
            log.exception("could not %s", what)
