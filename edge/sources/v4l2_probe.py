"""Why a V4L2 camera did not open, asked of the device itself (OpenCV says only that it could
not).

The causes a person meets are few: the node is not theirs to open (cameras belong to the
`video` group, and a service user outside it is refused), the path is not a V4L2 device, the
node captures no video (a UVC camera makes two nodes, /dev/video0 for frames and /dev/video1
for metadata, and the second is easy to pick), or another program holds the camera (a driver
streams to one program at a time). Each is found with a stat, an open and one
`VIDIOC_QUERYCAP` ioctl, without starting a stream.
"""

from __future__ import annotations

import errno
import fcntl
import grp
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

#: `_IOR('V', 0, struct v4l2_capability)`: the kernel fills the 104-byte struct.
VIDIOC_QUERYCAP = 0x80685600
_CAPABILITY = struct.Struct("16s32s32sIII12x")  # driver, card, bus_info, version, caps, device_caps
CAP_VIDEO_CAPTURE = 0x00000001
CAP_VIDEO_CAPTURE_MPLANE = 0x00001000
CAP_META_CAPTURE = 0x00800000
#: Set in `capabilities` when `device_caps` describes this node (the others are the device's).
CAP_DEVICE_CAPS = 0x80000000


@dataclass(frozen=True)
class V4l2Capability:
    """What `VIDIOC_QUERYCAP` says of one node."""

    driver: str  # `uvcvideo`
    card: str  # the camera's name
    bus_info: str  # `usb-0000:00:14.0-1`: the same on every node of one camera
    node_caps: int  # this node's capabilities

    @property
    def captures_video(self) -> bool:
        return bool(self.node_caps & (CAP_VIDEO_CAPTURE | CAP_VIDEO_CAPTURE_MPLANE))

    @property
    def role(self) -> str:
        """What the node does, for a message: `metadata` or `no video capture`."""
        return "metadata" if self.node_caps & CAP_META_CAPTURE else "no video capture"


def capability_from_bytes(raw: bytes) -> V4l2Capability:
    """Parse a filled `struct v4l2_capability` (104 bytes)."""
    driver, card, bus_info, _, caps, device_caps = _CAPABILITY.unpack_from(raw)
    return V4l2Capability(_text(driver), _text(card), _text(bus_info),
                          device_caps if caps & CAP_DEVICE_CAPS else caps)


def query_capability(path: str) -> V4l2Capability:
    """`VIDIOC_QUERYCAP` on `path`; raises OSError (PermissionError, ENOTTY for a device that
    is not V4L2, ...)."""
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        raw = bytearray(_CAPABILITY.size)
        fcntl.ioctl(fd, VIDIOC_QUERYCAP, raw)
    finally:
        os.close(fd)
    return capability_from_bytes(bytes(raw))


def diagnose_v4l2(path: str, devices: str = "/dev") -> str | None:
    """Why `path` cannot stream, in words that name the fix; None when nothing is found wrong
    (the driver refused for a reason of its own). `devices`: where its sibling nodes are."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return f"device {path} does not exist; list cameras with `v4l2-ctl --list-devices`"
    if not stat.S_ISCHR(mode):
        return (f"{path} is not a device (a camera is a character device such as /dev/video0; "
                "list them with `v4l2-ctl --list-devices`)")
    try:
        capability = query_capability(path)
    except PermissionError:
        return _not_permitted(path)
    except OSError as exc:
        if exc.errno in (errno.ENOTTY, errno.EINVAL):
            return (f"{path} is not a V4L2 camera (it answers no V4L2 query); list cameras "
                    "with `v4l2-ctl --list-devices`")
        return f"{path} could not be opened: {exc.strerror or exc}"
    if not capability.captures_video:
        nodes = capture_nodes(capability.bus_info, devices)
        instead = (f"use {' or '.join(nodes)}, its video node" if nodes else
                   "list its nodes with `v4l2-ctl --list-devices`")
        return (f"{path} is the {capability.role} node of '{capability.card}', which carries "
                f"no frames; {instead}")
    holders = processes_holding(path)
    if holders:
        return (f"{path} ('{capability.card}') is in use by {', '.join(holders)}: a camera "
                "streams to one program at a time; stop that one or give this camera to it")
    return None


def capture_nodes(bus_info: str, devices: str = "/dev") -> list[str]:
    """The video capture nodes under `devices` of the camera on `bus_info`, by name."""
    found = []
    for node in sorted(Path(devices).glob("video*"), key=lambda p: (len(p.name), p.name)):
        try:
            capability = query_capability(str(node))
        except OSError:
            continue
        if capability.bus_info == bus_info and capability.captures_video:
            found.append(str(node))
    return found


def processes_holding(path: str) -> list[str]:
    """`name (pid N)` of each process with `path` open, this one left out; processes of other
    users are seen only by root (what `fuser` sees)."""
    try:
        device = os.stat(path).st_rdev
    except OSError:
        return []
    holders = []
    for fds in Path("/proc").glob("[0-9]*/fd"):
        pid = int(fds.parent.name)
        if pid == os.getpid() or not _holds(fds, device):
            continue
        try:
            name = (fds.parent / "comm").read_text().strip()
        except OSError:
            name = "?"
        holders.append(f"{name} (pid {pid})")
    return holders


def _holds(fds: Path, device: int) -> bool:
    try:
        for fd in fds.iterdir():
            try:
                opened = os.stat(fd)
            except OSError:
                continue
            if stat.S_ISCHR(opened.st_mode) and opened.st_rdev == device:
                return True
    except OSError:  # gone, or not ours to read
        return False
    return False


def _not_permitted(path: str) -> str:
    group_id = os.stat(path).st_gid
    try:
        group = grp.getgrgid(group_id).gr_name
    except KeyError:
        group = str(group_id)
    unit = ("; the systemd unit's SupplementaryGroups=video does it for the service"
            if group == "video" else "")
    return (f"permission denied on {path} (group '{group}'): run edge as a member of that "
            f"group (`sudo usermod -aG {group} $USER`, then log in again{unit})")


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")
