"""Sampled frames whose `frame/meta` comes and whose JPEG does not, said once a run.

A broker drops a JPEG over its `message_size_limit` without a word (Mosquitto), and an ACL
may let a subscriber read `frame/meta` but not the frames: a user check's `edge monitor
--frames` saved nothing in 78 s and said nothing while the metas kept coming, and `edge
collect` put an ACL that hid the frames down to devices that sample none. A camera whose
metas keep coming without their JPEG (`AFTER` in a row) is said, with both causes.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("edge")

#: Metas in a row without their JPEG, from one camera, before it is said.
AFTER = 3


class MissingJpegs:
    """Counts, per camera, the metas that came without their JPEG; `tool` names the command
    in what it says. Thread-safe."""

    def __init__(self, tool: str) -> None:
        self._tool = tool
        self._lock = threading.Lock()
        self._in_a_row: dict[tuple[str, str], int] = {}
        self._said = False
        self.missing = 0  # metas without their JPEG, in all

    def jpeg_came(self, device: str, camera: str) -> None:
        with self._lock:
            self._in_a_row.pop((device, camera), None)

    def meta_alone(self, device: str, camera: str, frame_topic: str) -> None:
        """A meta came for a frame whose JPEG (on `frame_topic`) did not."""
        with self._lock:
            self.missing += 1
            key = (device, camera)
            self._in_a_row[key] = self._in_a_row.get(key, 0) + 1
            if self._said or self._in_a_row[key] < AFTER:
                return
            self._said = True
        log.warning("%s: %d frame/meta messages of %s/%s in a row came without their JPEG (%s): "
                    "the JPEGs do not reach the broker or are dropped there, for their size "
                    "most often (a broker's message_size_limit, or a max_packet_size for "
                    "which the device holds them back; the device's log says which), or the "
                    "broker's ACL lets this user read frame/meta but not the frames (allow "
                    "reading %s)", self._tool, AFTER, device, camera, frame_topic, frame_topic)
