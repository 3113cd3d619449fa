"""A real HTTP camera for the stream tests: an MJPEG stream (`multipart/x-mixed-replace`, as
IP cameras, ESP32 cameras and phone webcam apps serve it) at http://127.0.0.1:PORT/video, a
snapshot at /snapshot.jpg (the next frame at each request; the first frame as
application/octet-stream at /still.bin), a web page at /,
and at /stream the stream again, only with `?action=stream` (400 without, as mjpg-streamer),
from Python's own HTTP server in a thread.

With a user and password it asks for them as cameras do: Digest (MD5, qop=auth, checked here
with hashlib) or Basic. It may stream to one client at a time (503 to another, as ESP32
cameras answer), and serve https:// with a self-signed certificate. `MjpegServer` starts,
stops and restarts on one port, so a test can take a camera away and bring it back. Each frame
is a flat grey that steps by 8 levels a frame (its first pixel says which frame it was), drawn
at `fps`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

BOUNDARY = "edgeframe"
_PARAM = re.compile(r'(\w+)="?([^",]*)"?')


class MjpegServer:
    """The server on `port`; `url` (the stream's) stays the same across stop/start."""

    def __init__(self, port: int, width: int = 320, height: int = 240, fps: float = 10.0,
                 credentials: tuple[str, str] | None = None, method: str = "digest",
                 max_streams: int | None = None,
                 certificate: tuple[Path, Path] | None = None) -> None:
        """`max_streams`: how many clients it streams to at once (503 to more, as a
        one-client camera answers); `certificate`: (certificate, key) PEM files it serves
        https:// with."""
        self.port = port
        scheme = "http" if certificate is None else "https"
        self.url = f"{scheme}://127.0.0.1:{port}/video"
        self.max_streams = max_streams
        self.certificate = certificate
        self.streaming = 0
        self.refused_busy = 0
        self._count_lock = threading.Lock()
        self.size = (width, height)
        self.fps = fps
        self.credentials = credentials
        self.method = method
        self.realm = "edge-test-camera"
        self.nonce = os.urandom(8).hex()
        self.streams_served = 0
        self.snapshots_served = 0
        #: snapshot number -> what goes wrong with it: "busy" (503), "cut" (half the JPEG),
        #: "slow" (answered after `slow_s`), "short" (the JPEG, 5000 bytes short of its
        #: Content-Length, then the connection closed), "stall" (half of it, then `slow_s` of
        #: nothing), "empty" (HTTP 200 with no body)
        self.snapshot_faults: dict[int, str] = {}
        self.slow_s = 1.5
        #: path -> Location: answered with a 302 there
        self.redirects: dict[str, str] = {}
        #: Digest as strict cameras ask for it: a new nonce at each challenge, and a nonce
        #: count (nc) already seen refused with stale=true
        self.strict_nonces = False
        self.challenges = 0  # 401s sent
        self._nonces: set[str] = set()
        self._counted: set[tuple[str, str]] = set()
        self._stale = False
        self.connections = 0  # TCP connections accepted (a kept-alive one counts once)
        self._connections: set[socket.socket] = set()  # open now
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        self._stopping.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        server.daemon_threads = True
        if self.certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*map(str, self.certificate))
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="mjpeg-server",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Closes the listener and every connection it serves, as a camera that goes away
        does (a stream's writer sees `stopping`)."""
        self._stopping.set()
        with self._count_lock:
            open_now = list(self._connections)
        for connection in open_now:
            with contextlib.suppress(OSError):  # it closed meanwhile
                connection.shutdown(socket.SHUT_RDWR)
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

    def take_stream(self) -> bool:
        """Whether a client may be streamed to now (counted in `streaming` until it goes)."""
        with self._count_lock:
            if self.max_streams is not None and self.streaming >= self.max_streams:
                self.refused_busy += 1
                return False
            self.streaming += 1
            self.streams_served += 1
            return True

    def opened(self, connection: socket.socket) -> None:
        with self._count_lock:
            self._connections.add(connection)

    def closed(self, connection: socket.socket) -> None:
        with self._count_lock:
            self._connections.discard(connection)

    def next_snapshot(self) -> int:
        """The number of the snapshot to serve now (0, 1, ...)."""
        with self._count_lock:
            self.snapshots_served += 1
            return self.snapshots_served - 1

    def end_stream(self) -> None:
        with self._count_lock:
            self.streaming -= 1

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
        nonce, count = fields.get("nonce", ""), fields.get("nc", "")
        if self.strict_nonces:  # a count seen before is refused (stale), as cameras do
            with self._count_lock:
                if nonce not in self._nonces or (nonce, count) in self._counted:
                    self._stale = True
                    return False
                self._counted.add((nonce, count))
        elif nonce != self.nonce:
            return False
        expected = _md5(f"{first}:{nonce}:{count}:{fields.get('cnonce', '')}:auth:{second}")
        return fields.get("username") == user and fields.get("response") == expected

    def challenge(self) -> str:
        self.challenges += 1
        if self.method == "basic":
            return f'Basic realm="{self.realm}"'
        if not self.strict_nonces:
            return f'Digest realm="{self.realm}", nonce="{self.nonce}", qop="auth"'
        with self._count_lock:  # a new nonce for every challenge
            nonce, stale, self._stale = os.urandom(8).hex(), self._stale, False
            self._nonces.add(nonce)
        return (f'Digest realm="{self.realm}", nonce="{nonce}", qop="auth"'
                + (", stale=true" if stale else ""))


def _handler_for(server: MjpegServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            server.connections += 1
            super().setup()
            server.opened(self.connection)

        def finish(self) -> None:
            server.closed(self.connection)
            super().finish()

        def do_GET(self) -> None:
            if not server.authorized("GET", self.headers.get("Authorization")):
                # with a body, and the connection closed after it, as cameras answer
                self._send(401, "text/html", b"<html><body>401 Unauthorized</body></html>",
                           {"WWW-Authenticate": server.challenge(), "Connection": "close"})
                self.close_connection = True
                return
            path, _, query = self.path.partition("?")
            if path in server.redirects:
                self._send(302, "text/html", b"moved", {"Location": server.redirects[path]})
            elif path == "/cgi-bin/snap.cgi":  # credentials in the query, as Reolink's
                if query == "user=admin&password=pw":
                    self._snapshot(server.next_snapshot())
                else:  # and no challenge: the query is the only way in
                    self._send(401, "text/plain", b"login failed")
            elif path == "/video" or (path == "/stream" and query == "action=stream"):
                self._stream()
            elif path == "/stream":  # as mjpg-streamer without its query
                self._send(400, "text/plain", b"no action given")
            elif path == "/snapshot.jpg":  # a new picture at each request
                self._snapshot(server.next_snapshot())
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

        def _snapshot(self, index: int) -> None:
            fault = server.snapshot_faults.get(index)
            jpeg = server.frame(index)
            if fault == "busy":
                self._send(503, "text/plain", b"busy")
            elif fault == "cut":
                self._send(200, "image/jpeg", jpeg[:len(jpeg) // 2])
            elif fault == "empty":
                self._send(200, "image/jpeg", b"")
            elif fault in ("short", "stall"):  # fewer bytes than its Content-Length says
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(jpeg) + 5000))
                self.end_headers()
                self.wfile.write(jpeg if fault == "short" else jpeg[:len(jpeg) // 2])
                self.wfile.flush()
                if fault == "stall":
                    time.sleep(server.slow_s)
                self.close_connection = True
            else:
                if fault == "slow":
                    time.sleep(server.slow_s)
                self._send(200, "image/jpeg", jpeg)

        def _stream(self) -> None:
            if not server.take_stream():
                self._send(503, "text/plain", b"one viewer at a time")
                return
            try:
                self._frames()
            finally:
                server.end_stream()

        def _frames(self) -> None:
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


def self_signed_certificate(folder: Path, name: str = "camera",
                            holder: str = "IP:127.0.0.1") -> tuple[Path, Path] | None:
    """A camera's self-signed (certificate, key) made out to `holder` (a subjectAltName),
    made by `openssl` in `folder` as `name`.pem and `name`.key; None where openssl is not
    installed."""
    certificate, key = folder / f"{name}.pem", folder / f"{name}.key"
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "2", "-subj", f"/CN={name}.local", "-addext",
                        f"subjectAltName={holder}", "-keyout", str(key), "-out",
                        str(certificate)], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.CalledProcessError):
        return None
    return certificate, key
