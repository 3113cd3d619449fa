"""A real RTSP server for the camera-supervision tests: GStreamer's RTSP server (Debian's
gir1.2-gst-rtsp-server-1.0) serving a live H.264 test pattern at rtsp://127.0.0.1:PORT/cam.

It runs as its own process under the system Python (/usr/bin/python3), which imports PyGObject
from Debian's python3-gi; the venv cannot. `RtspServer` starts, stops and restarts it on one port
so a test can take a camera's stream away and bring it back. With a user and password it asks
for them as cameras do (Digest, or Basic). With a certificate and its key it serves RTSP over
TLS (`rtsps://`), as cameras with a self-signed certificate do.

    /usr/bin/python3 tests/rtsp_server.py PORT [--tls CERT KEY] [WIDTH HEIGHT FPS
                                              [USER PASSWORD digest|basic]]
"""

from __future__ import annotations

import argparse
import functools
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
PACKAGES = ("gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
            "gstreamer1.0-plugins-ugly python3-gi")


@functools.cache
def missing_reason() -> str | None:
    """Why the server cannot run on this machine, or None when it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is missing"
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', "
             "'1.0'); from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('rtph264pay')")
    result = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30)
    if result.returncode != 0:
        return f"GStreamer's RTSP server is not installed (apt-get install -y {PACKAGES})"
    return None


class RtspServer:
    """The server as a subprocess; `url` stays the same across stop/start."""

    def __init__(self, port: int, width: int = 320, height: int = 240, fps: int = 15,
                 credentials: tuple[str, str] | None = None, method: str = "digest",
                 certificate: tuple[Path, Path] | None = None) -> None:
        """`credentials`: (user, password) the server asks for, by `method`; `certificate`:
        (certificate, key) PEM files it serves TLS with."""
        self.port = port
        self.url = f"{'rtsps' if certificate else 'rtsp'}://127.0.0.1:{port}/cam"
        self._args = [] if certificate is None else ["--tls", *map(str, certificate)]
        self._args += [str(width), str(height), str(fps)]
        if credentials is not None:
            self._args += [*credentials, method]
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> None:
        assert shutil.which(SYSTEM_PYTHON) or Path(SYSTEM_PYTHON).exists()
        self._process = subprocess.Popen(
            [SYSTEM_PYTHON, __file__, str(self.port), *self._args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the RTSP server exited: {self._process.stderr.read()!r}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the RTSP server did not listen on port {self.port} in {timeout} s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "the RTSP server is not running"
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None


def serve(port: int, width: int, height: int, fps: int,  # pragma: no cover - subprocess
          credentials: list[str], tls: list[str]) -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtsp", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    gi.require_version("Gio", "2.0")
    from gi.repository import Gio, GLib, Gst, GstRtsp, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},"
        f"framerate={fps}/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
        "threads=1 ! rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_shared(True)
    if credentials or tls:
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth = GstRtspServer.RTSPAuth()
        if not credentials:  # TLS alone: anyone may watch
            auth.set_default_token(token)
        elif credentials[2] == "digest":
            auth.add_digest(credentials[0], credentials[1], token)
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        else:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(*credentials[:2]), token)
        if tls:
            auth.set_tls_certificate(Gio.TlsCertificate.new_from_files(*tls))
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", "media.factory.access", True)
        permissions.add_permission_for_role("viewer", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on port {port}")
    GLib.MainLoop().run()


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """The command line of the module's docstring; `--help` shows it."""
    parser = argparse.ArgumentParser(
        description="Serve a live H.264 test pattern at rtsp://127.0.0.1:PORT/cam "
                    "(rtsps:// with --tls).")
    parser.add_argument("port", type=int)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), default=[],
                        help="serve RTSP over TLS with this certificate and key (PEM)")
    parser.add_argument("stream", nargs="*", metavar="WIDTH HEIGHT FPS [USER PASSWORD METHOD]",
                        help="the picture's size and rate (default 320 240 15), then a user "
                             "and password the server asks for, by digest or basic")
    args = parser.parse_intermixed_args(argv)
    if len(args.stream) not in (0, 3, 6):
        parser.error("give WIDTH HEIGHT FPS, optionally followed by USER PASSWORD METHOD")
    if len(args.stream) == 6 and args.stream[5] not in ("digest", "basic"):
        parser.error(f"METHOD must be digest or basic, got {args.stream[5]!r}")
    try:
        args.size = [int(value) for value in args.stream[:3]] or [320, 240, 15]
    except ValueError:
        parser.error(f"WIDTH HEIGHT FPS must be integers, got {' '.join(args.stream[:3])}")
    args.credentials = args.stream[3:6]
    return args


if __name__ == "__main__":  # pragma: no cover - subprocess
    arguments = parse_arguments(sys.argv[1:])
    serve(arguments.port, *arguments.size, arguments.credentials, arguments.tls)
