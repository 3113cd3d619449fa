"""A real live HLS stream for the source tests: GStreamer's `hlssink2` (Debian's
gstreamer1.0-plugins-bad) writing a live H.264 test pattern as one-second MPEG-TS segments and
their playlist, served by Python's HTTP server at http://127.0.0.1:PORT/live.m3u8, as go2rtc,
Frigate and CDNs serve a camera's HLS."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

PACKAGES = "gstreamer1.0-tools gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly"
#: Segments the playlist holds before a test reads it: FFmpeg starts a live playlist three
#: from its end, so it opens on a burst of that many segments' frames.
READY_SEGMENTS = 3


@functools.cache
def missing_reason() -> str | None:
    """Why the stream cannot be made on this machine, or None when it can."""
    if shutil.which("gst-inspect-1.0") is None:
        return f"GStreamer's tools are not installed (apt-get install -y {PACKAGES})"
    for element in ("hlssink2", "x264enc", "h264parse"):
        found = subprocess.run(["gst-inspect-1.0", "--exists", element], capture_output=True,
                               timeout=30)
        if found.returncode != 0:
            return f"GStreamer's {element} is not installed (apt-get install -y {PACKAGES})"
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class HlsServer:
    """The segmenter as a subprocess writing into `folder`, served over HTTP on `port`."""

    def __init__(self, folder: Path, port: int, fps: int = 15, pattern: str = "ball") -> None:
        """`pattern`: videotestsrc's (`snow` differs on every run; `ball` repeats its pixels
        at the same timestamps when the segmenter starts again)."""
        self.folder, self.port, self.fps, self.pattern = folder, port, fps, pattern
        self.url = f"http://127.0.0.1:{port}/live.m3u8"
        self._segmenter: subprocess.Popen[bytes] | None = None
        self._http: http.server.ThreadingHTTPServer | None = None

    def start(self, timeout: float = 20.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._segmenter = subprocess.Popen(
            ["gst-launch-1.0", "-q", "videotestsrc", "is-live=true", f"pattern={self.pattern}", "!",
             f"video/x-raw,width=320,height=240,framerate={self.fps}/1", "!", "x264enc",
             "tune=zerolatency", "speed-preset=ultrafast", f"key-int-max={self.fps}",
             "threads=1", "!", "h264parse", "!", "hlssink2", "target-duration=1",
             "max-files=8", "playlist-length=6",
             f"location={self.folder / 'segment%05d.ts'}",
             f"playlist-location={self.folder / 'live.m3u8'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if self._http is None:
            handler = functools.partial(_QuietHandler, directory=str(self.folder))
            self._http = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
            threading.Thread(target=self._http.serve_forever, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._segmenter.poll() is not None:
                assert self._segmenter.stderr is not None
                raise RuntimeError(f"the HLS segmenter exited: {self._segmenter.stderr.read()!r}")
            if self.segments() >= READY_SEGMENTS:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the HLS segmenter wrote no {READY_SEGMENTS} segments in {timeout} s")

    def segments(self) -> int:
        """Segments the playlist lists now."""
        playlist = self.folder / "live.m3u8"
        if not playlist.is_file():
            return 0
        return sum(1 for line in playlist.read_text().splitlines() if line.endswith(".ts"))

    def stop_writing(self) -> None:
        """The segmenter stops; its last playlist and segments are still served, as a
        restreamer's whose camera went away."""
        if self._segmenter is not None and self._segmenter.poll() is None:
            self._segmenter.kill()
            self._segmenter.wait(timeout=10)
        self._segmenter = None

    def stop(self) -> None:
        self.stop_writing()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        self._http = None
