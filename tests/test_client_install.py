"""The plain install (paho-mqtt and pydantic, no extra) is the MQTT client: `edge monitor` and
edge.client run on it, and every other command says which extra to install.

The environment is made here without a network: the plain install's distributions, as this
venv has them, linked into a folder that a Python started without its site-packages (`-S`)
reads, with this checkout. NumPy, OpenCV, SciPy and Pillow cannot be imported there."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from paho.mqtt import publish

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def plain_install_distributions() -> set[str]:
    """The project's dependencies without extras, and theirs, by distribution name."""
    wanted = [Requirement(text) for text in
              tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    found: set[str] = set()
    while wanted:
        requirement = wanted.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        if requirement.name.lower() in found:
            continue
        found.add(requirement.name.lower())
        wanted += [Requirement(text) for text in metadata.requires(requirement.name) or []]
    return found


@pytest.fixture(scope="module")
def client_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("client-site")
    for name in plain_install_distributions():
        for file in metadata.distribution(name).files or []:
            top = file.parts[0]
            if top.endswith((".dist-info", ".pth")) or top in ("..", "__pycache__"):
                continue
            link = site / top
            if not link.exists():
                link.symlink_to(Path(str(file.locate())).parents[len(file.parts) - 1] / top)
    return site


def run_client(site: Path, code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    preamble = (f"import sys; sys.path[:0] = [{str(site)!r}, {str(ROOT)!r}]; "
                "sys.modules.pop('edge', None)\n")
    return subprocess.run([sys.executable, "-S", "-c", preamble + code], capture_output=True,
                          text=True, timeout=timeout, cwd=site)


def edge_command(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_client(site, f"from edge.cli import main; sys.exit(main({list(args)!r}))")


def test_the_plain_install_holds_no_runtime_library(client_site):
    names = plain_install_distributions()
    assert {"paho-mqtt", "pydantic"} <= names
    assert not names & {"numpy", "opencv-python-headless", "scipy", "pillow", "onnxruntime"}
    result = run_client(client_site, "import importlib.util as u; "
                                     "print([m for m in ('numpy', 'cv2', 'scipy', 'PIL') "
                                     "if u.find_spec(m)])")
    assert result.stdout.strip() == "[]", result.stderr


def test_edge_monitor_and_the_client_run_on_the_plain_install(client_site, mosquitto):
    status = {"v": 1, "state": "online", "version": "0.1", "model": "m", "cameras": ["gate"],
              "started_at": "2026-12-04T08:00:00Z"}
    publish.single("edge/light-1/status", json.dumps(status), qos=1, retain=True,
                   hostname="127.0.0.1", port=mosquitto.port)
    try:
        watched = edge_command(client_site, "monitor", "--mqtt", mosquitto.url, "--prefix",
                               "edge/light-1", "--seconds", "2", "--json")
        parsed = run_client(client_site, f"""
from edge.client import Subscriber
with Subscriber({mosquitto.url!r}, "edge/light-1") as client:
    message = client.get(timeout=10)
print(message.kind, message.device, message.payload.state, message.retained)
print(sorted(m for m in ("numpy", "cv2", "scipy", "PIL") if m in sys.modules))
""")
    finally:
        publish.single("edge/light-1/status", b"", qos=1, retain=True, hostname="127.0.0.1",
                       port=mosquitto.port)
    assert watched.returncode == 0, watched.stderr
    assert re.search(r"\[light-1\] online: model m", watched.stdout), watched.stdout
    assert json.loads(watched.stdout.strip().splitlines()[-1])["messages"] == {"status": 1}
    assert parsed.returncode == 0, parsed.stderr
    assert parsed.stdout.splitlines() == ["status light-1 online True", "[]"]


@pytest.mark.parametrize(("command", "extra"), [
    (["run", "--config", "edge.toml"], "cpu"),
    (["demo", "--seconds", "1"], "cpu,demo"),
    (["probe", "synthetic://shapes"], "runtime"),
    (["collect", "--mqtt", "mqtt://127.0.0.1:1", "--out", "dataset"], "runtime"),
    (["eval", "model.onnx", "--data", "val"], "cpu"),
    (["convert", "model.onnx", "-o", "out.onnx"], "convert"),
    (["build-engine", "model.onnx"], "jetson"),
])
def test_every_other_command_names_its_extra_with_exit_2(client_site, command, extra):
    result = edge_command(client_site, *command)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert re.search(rf"edge {command[0]}: error: edge {command[0]} needs the Python module "
                     rf"'numpy', which is not installed; install it with: .*pip install "
                     rf".*\[{re.escape(extra)}\]", result.stderr), result.stderr
    assert not (client_site / "dataset").exists()
    helped = edge_command(client_site, command[0], "--help")
    assert helped.returncode == 0
    assert f"Not installed here: edge {command[0]} needs the '{extra}' extra" in helped.stdout


def test_the_asyncapi_generator_names_pyyaml_on_the_plain_install(client_site):
    """A user check: `python -m edge.client.asyncapi` was a ModuleNotFoundError traceback."""
    result = run_client(client_site, "import runpy; runpy.run_module('edge.client.asyncapi', "
                                     "run_name='__main__')")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "the AsyncAPI generator needs PyYAML: pip install 'pyyaml>=6'" in result.stderr
