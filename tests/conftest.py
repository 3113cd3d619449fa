"""Shared fixtures: a real Mosquitto broker on a free port, the bundled model, tiny ONNX graphs."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.broker import free_port
from edge.demo import bundled_model
from tests.rtsp_server import RtspServer

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")


def mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), *MOSQUITTO_PATHS):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail("mosquitto is not installed; install it with `apt-get install -y mosquitto` "
                "(the MQTT tests need a real broker)")


@dataclass
class Mosquitto:
    port: int
    config: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        """Mosquitto's own log (a file: a pipe nobody reads would stall a chatty broker)."""
        return self.config.with_suffix(".log")

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([mosquitto_binary(), "-c", str(self.config)],
                                            stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {self.log.read_text()}") from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening within 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


def make_mosquitto(tmp_path: Path, persistent: bool = False, settings: str = "") -> Mosquitto:
    """A Mosquitto on a free loopback port, not started; `persistent`: it keeps retained
    messages and sessions across its restarts (in `tmp_path`), as a production broker does;
    `settings`: more lines of its configuration."""
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    kept = (f"persistence true\npersistence_location {tmp_path}/\nuser root\n" if persistent
            else "persistence false\n")
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n{kept}{settings}")
    return Mosquitto(port, config)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A real Mosquitto broker on a free loopback port, stopped after the test."""
    broker = make_mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def stopped_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto the test starts itself (for broker-unreachable-at-start cases)."""
    broker = make_mosquitto(tmp_path)
    yield broker
    broker.stop()


@pytest.fixture
def rtsp_server() -> Iterator[RtspServer]:
    """GStreamer's RTSP server (tests.rtsp_server) on a free port; the test starts it."""
    server = RtspServer(free_port())
    yield server
    server.stop()


@pytest.fixture(scope="session")
def demo_model() -> Path:
    path = bundled_model()
    assert path.is_file(), "the bundled demo model is missing; run converters.demo_detector.train"
    return path


def _hardware_missing() -> dict[str, str]:
    """Marker -> why its tests cannot run on this machine (absent when they can)."""
    import importlib.util

    missing = {}
    if importlib.util.find_spec("tensorrt") is None:
        missing["tensorrt"] = "TensorRT is not installed (it comes with JetPack)"
    if shutil.which("nvidia-smi") is None and not Path("/dev/nvhost-ctrl").exists():
        missing["gpu"] = "no NVIDIA GPU on this machine"
    if not Path("/etc/nv_tegra_release").exists():
        missing["jetson"] = "not a Jetson (no /etc/nv_tegra_release)"
    return missing


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = _hardware_missing()
    for item in items:
        for marker, reason in missing.items():
            if item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.skip(reason=reason))
