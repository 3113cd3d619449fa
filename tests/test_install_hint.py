"""The install command a missing extra's error prints works for this installation."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

import pytest
from packaging.requirements import Requirement

import edge.install_hint
from edge.errors import MissingDependencyError
from edge.install_hint import install_command

CHECKOUT = Path(__file__).resolve().parents[1]
PIP = f"{shlex.quote(sys.executable)} -m pip install"


def test_a_source_install_is_told_to_install_from_its_checkout_with_its_own_pip():
    """edge-runtime is not on PyPI ('edge-runtime[convert]' found nothing), and a bare `pip`
    outside the activated venv installs into another Python."""
    assert install_command("demo") == f"{PIP} -e '{CHECKOUT}[demo]'"
    error = MissingDependencyError("amqtt", "demo", "the embedded demo broker")
    assert str(error).endswith(f"install it with: {PIP} -e '{CHECKOUT}[demo]'")


def test_pytorch_goes_first_where_the_extra_needs_it_and_it_is_missing(monkeypatch):
    assert install_command("convert") == f"{PIP} -e '{CHECKOUT}[convert]'"  # torch is here
    real = importlib.util.find_spec
    monkeypatch.setattr(edge.install_hint.importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    command = install_command("convert")
    assert command.startswith(f"{PIP} torch==2.13.0 && {PIP} -e '{CHECKOUT}[convert]'  # ")
    assert "download.pytorch.org/whl/cpu" in command and "torch" not in install_command("demo")
    # the whole line is one command for a shell: the note is a comment
    assert shlex.split(command, comments=True) == [
        *shlex.split(PIP), "torch==2.13.0", "&&", *shlex.split(PIP), "-e",
        f"{CHECKOUT}[convert]"]


@pytest.mark.parametrize(("origin", "expected"), [
    ({"url": "file://{tmp}/edge_runtime-0.1.0-py3-none-any.whl", "archive_info": {}},
     "{pip} '{tmp}/edge_runtime-0.1.0-py3-none-any.whl[demo]'"),
    ({"url": "file://{tmp}", "dir_info": {}}, "{pip} '{tmp}[demo]'"),
    ({"url": "file://{tmp}", "dir_info": {"editable": True}}, "{pip} -e '{tmp}[demo]'"),
    ({"url": "https://example.com/edge_runtime.whl", "archive_info": {}},
     "{pip} 'edge-runtime[demo]'"),
])
def test_installed_from_a_wheel_a_folder_or_elsewhere(tmp_path, monkeypatch, origin, expected):
    (tmp_path / "edge_runtime-0.1.0-py3-none-any.whl").write_bytes(b"")
    recorded = json.dumps(origin).replace("{tmp}", str(tmp_path))

    class Installed:
        def read_text(self, name: str) -> str | None:
            return recorded if name == "direct_url.json" else None

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Installed())
    assert install_command("demo") == expected.format(pip=PIP, tmp=tmp_path)


@pytest.mark.parametrize("command", ["convert", "inspect", "calibrate"])
def test_a_workstation_commands_help_says_when_its_extra_is_missing(monkeypatch, capsys,
                                                                   command):
    """In the quick start's `.[cpu,demo]` install, `edge convert --help` printed the whole
    help and exited 0; only running it said what to install."""
    from edge.cli import build_parser

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("onnx", "torch") else real(name, *a))
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.endswith(f"\nNot installed here: edge {command} needs the 'convert' extra; "
                        f"install it with:\n  {PIP} torch==2.13.0 && {PIP} -e "
                        f"'{CHECKOUT}[convert]'  # {edge.install_hint.TORCH_NOTE}\n")


def test_a_commands_help_says_nothing_of_an_extra_that_is_installed(capsys):
    from edge.cli import build_parser

    for command in ("convert", "run"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        assert "Not installed here" not in capsys.readouterr().out


def test_eval_scores_a_model_without_onnx_or_torch(demo_model):
    """A user check: `edge eval --help` said it needed the convert extra; it runs on a device
    with the `cpu` extra alone."""
    script = ("import sys; sys.modules['onnx'] = sys.modules['torch'] = None\n"
              "from edge.cli import main\n"
              "sys.exit(main(['eval', sys.argv[1], '--data', 'synthetic://shapes?seed=5', "
              "'--max-images', '40', '--json']))")
    result = subprocess.run([sys.executable, "-c", script, str(demo_model)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["map50"] > 0.9


def test_the_demo_on_a_broker_of_ones_own_needs_no_embedded_broker(mosquitto):
    """A user check: `edge demo --mqtt URL` was refused for want of amqtt, the embedded
    broker it does not start."""
    script = ("import sys; sys.modules['amqtt'] = None\n"
              "from edge.cli import main\n"
              "sys.exit(main(['demo', '--seconds', '2', '--mqtt', sys.argv[1], '--json']))")
    result = subprocess.run([sys.executable, "-c", script, mosquitto.url],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["frames"] > 0 and summary["received"] > 0


@pytest.mark.parametrize("module", ["motmetrics", "amqtt"])
def test_the_demo_without_its_extra_exits_2_before_starting_anything(monkeypatch, capsys,
                                                                     module):
    """A user check in a `jetson` venv: `edge demo` started its embedded broker and printed
    how to watch it, then stopped for want of motmetrics."""
    from edge.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == module else real(name, *a))
    assert main(["demo", "--seconds", "1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    # the module alone first: on a Jetson the extra would bring pip's OpenCV and NumPy 2 over
    # JetPack's (a user check)
    alone = {"motmetrics": "'motmetrics>=1.4'", "amqtt": "'amqtt>=0.11'"}[module]
    assert captured.err.startswith(f"edge demo: error: edge demo needs the Python module "
                                   f"'{module}', which is not installed; for edge demo alone, "
                                   f"install it with: {sys.executable} -m pip install {alone}; "
                                   "for every command of the 'cpu,demo' extra: "), captured.err
    assert captured.err.rstrip().endswith("[cpu,demo]'"), captured.err


def test_the_demo_modules_alone_are_required_as_the_demo_extra_requires_them():
    from edge.install_hint import DEMO_ALONE

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    demo = {Requirement(text).name: text for text in
            project["project"]["optional-dependencies"]["demo"]}
    assert {module: f"'{demo[module]}'" for module in DEMO_ALONE} == DEMO_ALONE
