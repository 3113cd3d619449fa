"""A real HTTP camera for the stream tests: an MJPEG stream (`multipart/x-mixed-replace`, as
IP cameras, ESP32 cameras and phone webcam apps serve it) at http://127.0.0.1:PORT/video, a
snapshot at /snapshot.jpg (and as application/octet-stream at /still.bin), a web page at /,
and at /stream the stream again, only with `?action=stream` (400 without, as mjpg-streamer),
from Python's own HTTP server in a thread.

With a user and password it asks for them as cameras do: Digest (MD5, qop=auth, checked here
with hashlib) or Basic. `MjpegServer` starts, stops and restarts on one port, so a test can take
a camera away and bring it back. Each frame is a flat grey that steps by 8 levels a frame (its
first pixel says which frame it was), drawn at `fps`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

BOUNDARY = "edgeframe"
_PARAM = re.compile(r'(\w+)="?([^",]*)"?')


class MjpegServer:
    """The server on `port`; `url` (the stream's) stays the same across stop/start."""

    def __init__(self, port: int, width: int = 320, height: int = 240, fps: float = 10.0,
                 credentials: tuple[str, str] | None = None, method: str = "digest") -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/video"
        self.size = (width, height)
        self.fps = fps
        self.credentials = credentials
        self.method = method
        self.realm = "edge-test-camera"
        self.nonce = os.urandom(8).hex()
        self.streams_served = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        self._stopping.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="mjpeg-server",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Closes the listener and every stream it serves (their writers see `stopping`)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def frame(self, index: int) -> bytes:
        width, height = self.size
        image = np.full((height, width, 3), (index * 8) % 256, np.uint8)
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        return encoded.tobytes()

    def authorized(self, method: str, header: str | None) -> bool:
        if self.credentials is None:
            return True
        if header is None:
            return False
        user, password = self.credentials
        scheme, _, rest = header.partition(" ")
        if scheme.lower() == "basic":
            return self.method == "basic" and base64.b64decode(rest).decode() == \
                f"{user}:{password}"
        if scheme.lower() != "digest" or self.method != "digest":
            return False
        fields = dict(_PARAM.findall(rest))
        first = _md5(f"{user}:{self.realm}:{password}")
        second = _md5(f"{method}:{fields.get('uri', '')}")
        expected = _md5(f"{first}:{self.nonce}:{fields.get('nc', '')}:"
                        f"{fields.get('cnonce', '')}:auth:{second}")
        return fields.get("username") == user and fields.get("response") == expected

    def challenge(self) -> str:
        if self.method == "basic":
            return f'Basic realm="{self.realm}"'
        return f'Digest realm="{self.realm}", nonce="{self.nonce}", qop="auth"'


def _handler_for(server: MjpegServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if not server.authorized("GET", self.headers.get("Authorization")):
                # with a body, and the connection closed after it, as cameras answer
                self._send(401, "text/html", b"<html><body>401 Unauthorized</body></html>",
                           {"WWW-Authenticate": server.challenge(), "Connection": "close"})
                self.close_connection = True
                return
            path, _, query = self.path.partition("?")
            if path == "/video" or (path == "/stream" and query == "action=stream"):
                self._stream()
            elif path == "/stream":  # as mjpg-streamer without its query
                self._send(400, "text/plain", b"no action given")
            elif path == "/snapshot.jpg":
                self._send(200, "image/jpeg", server.frame(0))
            elif path == "/still.bin":  # a snapshot served without its media type
                self._send(200, "application/octet-stream", server.frame(0))
            elif path == "/":
                self._send(200, "text/html", b"<html><body>camera</body></html>")
            else:
                self._send(404, "text/plain", b"not found")

        def _send(self, status: int, kind: str, body: bytes,
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _stream(self) -> None:
            server.streams_served += 1
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.close_connection = True
            started = time.monotonic()
            index = 0
            try:
                while not server.stopping:
                    jpeg = server.frame(index)
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                     f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                                     + jpeg + b"\r\n")
                    self.wfile.flush()
                    index += 1
                    time.sleep(max(0.0, started + index / server.fps - time.monotonic()))
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *_: object) -> None:
            pass

    return Handler


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
