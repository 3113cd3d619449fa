"""An in-process MQTT broker (amqtt) so `edge demo` needs no installed broker."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from edge.errors import EdgeError, MissingDependencyError
from edge.install_hint import DEMO_ALONE


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class _MqttFiveProbes(logging.Filter):
    """Drops amqtt's warnings about MQTT 5 connection attempts: edge's subscribers try MQTT 5
    first and fall back to 3.1.1, which is all amqtt speaks, so each probe is expected."""

    PROBE_WARNINGS = ("Invalid connection from", "Invalid protocol from")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.PROBE_WARNINGS)


class EmbeddedBroker:
    """amqtt on its own event-loop thread, listening on 127.0.0.1:`port` (a free one by default).
    It speaks MQTT 3.1.1 only (`MQTT5`), so a client of its own need not try MQTT 5 first."""

    MQTT5 = False

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self._loop = asyncio.new_event_loop()
        self._broker: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="mqtt-broker", daemon=True)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> EmbeddedBroker:
        try:
            import amqtt.broker  # noqa: F401, PLC0415 - optional (the demo extra)
        except ImportError as exc:
            raise MissingDependencyError("amqtt", "cpu,demo", "the embedded demo broker",
                                         DEMO_ALONE["amqtt"]) from exc
        # amqtt logs every packet at INFO; keep the demo's console for detections.
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        broker_log = logging.getLogger("amqtt.broker")
        if not any(isinstance(f, _MqttFiveProbes) for f in broker_log.filters):
            broker_log.addFilter(_MqttFiveProbes())
        logging.getLogger("transitions").setLevel(logging.WARNING)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise EdgeError(f"the embedded MQTT broker could not listen on {self.host}:{self.port}"
                            f" ({self._error}); pass --mqtt URL to use another broker")
        return self

    def _serve(self) -> None:
        from amqtt.broker import Broker  # noqa: PLC0415 - optional (the demo extra)

        asyncio.set_event_loop(self._loop)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                        {"allow_anonymous": True}},
        }

        async def boot() -> None:
            self._broker = Broker(config, loop=self._loop)
            await self._broker.start()

        try:
            self._loop.run_until_complete(boot())
        except Exception as exc:  # noqa: BLE001 - thread boundary: start() reports it
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        if self._broker is not None and self._loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                future.result(timeout=5.0)
            # best effort; the thread is a daemon. amqtt 0.11 cancels its own shutdown (a user
            # check: every `edge demo` ended in a traceback), and before Python 3.11 a future's
            # TimeoutError is not the builtin one
            except (TimeoutError, concurrent.futures.TimeoutError,
                    concurrent.futures.CancelledError, RuntimeError, OSError):
                logging.getLogger(__name__).debug("embedded broker shutdown", exc_info=True)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5.0)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")


def mosquitto_binary() -> str | None:
    """The installed Mosquitto broker, if any (Debian puts it in /usr/sbin, off a user's PATH)."""
    for candidate in (shutil.which("mosquitto"), *MOSQUITTO_PATHS):
        if candidate and Path(candidate).exists():
            return candidate
    return None


class LocalMosquitto:
    """A private Mosquitto on 127.0.0.1 and a free port, for `edge bench`: a real broker with
    its own process, so the daemon's publishing cost is what a deployment pays."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self._folder = tempfile.TemporaryDirectory(prefix="edge-mosquitto-",
                                                   ignore_cleanup_errors=True)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> LocalMosquitto:
        config = Path(self._folder.name) / "mosquitto.conf"
        config.write_text(f"listener {self.port} {self.host}\nallow_anonymous true\n"
                          "persistence false\n")
        # its own session: a terminal's Ctrl-C (sent to the whole process group) stops the
        # bench, which then stops this broker after its last messages, not both at once (a user
        # check: the bench then warned of messages it could not send); kept by
        # `edge.broker_keeper` no longer than this process, however it ends
        self._process = subprocess.Popen(
            [sys.executable, "-m", "edge.broker_keeper", self._folder.name, self.binary, "-c",
             str(config)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                if self._process.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise EdgeError(f"{self.binary} did not start listening on {self.host}:{self.port}; "
                        "pass --mqtt URL to use another broker")

    def stop(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                self._process.wait(timeout=10)
            if self._process.stdin is not None:
                self._process.stdin.close()
        self._process = None
        self._folder.cleanup()
