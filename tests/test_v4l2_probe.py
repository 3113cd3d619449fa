"""Why a V4L2 camera did not open: said from the device node itself (OpenCV only says that it
could not). No camera is attached here, so the nodes are real character devices of other
kinds, made with mknod where that is allowed."""

from __future__ import annotations

import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.errors import SourceError
from edge.sources import source_from_uri
from edge.sources.v4l2_probe import (
    CAP_DEVICE_CAPS,
    CAP_META_CAPTURE,
    CAP_VIDEO_CAPTURE,
    capability_from_bytes,
    diagnose_v4l2,
    processes_holding,
)

NOBODY = 65534


def _capability(card: str, caps: int, device_caps: int) -> bytes:
    return struct.pack("16s32s32sIII12x", b"uvcvideo", card.encode(), b"usb-0000:00:14.0-1",
                       0x60800, caps, device_caps)


def test_a_uvc_cameras_two_nodes_are_told_apart_by_their_own_capabilities():
    """A UVC camera's capabilities (both nodes) include capture; only `device_caps` says that
    /dev/video1 carries metadata."""
    both = CAP_VIDEO_CAPTURE | CAP_META_CAPTURE | CAP_DEVICE_CAPS
    video = capability_from_bytes(_capability("HD Webcam", both, CAP_VIDEO_CAPTURE))
    metadata = capability_from_bytes(_capability("HD Webcam", both, CAP_META_CAPTURE))
    assert video.captures_video and video.card == "HD Webcam" and video.driver == "uvcvideo"
    assert not metadata.captures_video and metadata.role == "metadata"
    assert metadata.bus_info == video.bus_info == "usb-0000:00:14.0-1"
    # an old driver without per-node capabilities: the device's own stand for the node
    old = capability_from_bytes(_capability("Old cam", CAP_VIDEO_CAPTURE, 0))
    assert old.captures_video


def test_a_file_and_a_device_that_is_no_camera_are_named_so(tmp_path):
    plain = tmp_path / "video0"
    plain.write_bytes(b"")
    assert diagnose_v4l2(str(plain)) == (
        f"{plain} is not a device (a camera is a character device such as /dev/video0; list "
        "them with `v4l2-ctl --list-devices`)")
    assert diagnose_v4l2("/dev/null") == (
        "/dev/null is not a V4L2 camera (it answers no V4L2 query); list cameras with "
        "`v4l2-ctl --list-devices`")
    assert "does not exist" in (diagnose_v4l2(str(tmp_path / "video9")) or "")


def test_a_v4l2_source_that_is_no_camera_says_so_where_opencv_does_not():
    with pytest.raises(SourceError) as refused:
        source_from_uri("v4l2:///dev/null").open()
    assert str(refused.value) == (
        "source 'v4l2:///dev/null' could not be opened: /dev/null is not a V4L2 camera (it "
        "answers no V4L2 query); list cameras with `v4l2-ctl --list-devices`")


@pytest.fixture
def device_folder() -> Iterator[Path]:
    """A folder every user may enter (pytest's are private to theirs), for device nodes made
    with mknod (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    folder = Path(tempfile.mkdtemp(prefix="edge-dev-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def _node(folder: Path, name: str, minor: int, mode: int, group: int = 0) -> Path:
    node = folder / name
    try:
        os.mknod(node, stat.S_IFCHR | mode, os.makedev(1, minor))
    except PermissionError:
        pytest.skip("this container may not make device nodes")
    os.chown(node, 0, group)
    node.chmod(mode)
    return node


def test_a_camera_of_a_group_the_user_is_not_in_names_the_group_and_the_fix(device_folder):
    """The commonest failure of a service: its user is not in the `video` group."""
    import grp

    video = grp.getgrnam("video").gr_gid if "video" in {g.gr_name for g in grp.getgrall()} \
        else None
    if video is None:
        pytest.skip("no video group here")
    node = _node(device_folder, "video0", 3, 0o660, video)  # /dev/null's numbers
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        said = diagnose_v4l2(str(node))
    finally:
        os.seteuid(0)
        os.setegid(0)
    assert said == (
        f"permission denied on {node} (group 'video'): run edge as a member of that group "
        "(`sudo usermod -aG video $USER`, then log in again; the systemd unit's "
        "SupplementaryGroups=video does it for the service)")


def test_the_processes_that_hold_a_device_are_named(device_folder):
    node = _node(device_folder, "held", 7, 0o666)  # /dev/full's numbers: rarely open
    with node.open("rb") as held:
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                                   stdin=held)
    try:
        holders = processes_holding(str(node))
    finally:
        sleeper.kill()
        sleeper.wait()
    name = Path(sys.executable).name[:15]  # comm: the name it was started by, cut at 15
    assert f"{name} (pid {sleeper.pid})" in holders
    assert not any(f"(pid {os.getpid()})" in holder for holder in holders)
    assert f"(pid {sleeper.pid})" not in " ".join(processes_holding(str(node)))
