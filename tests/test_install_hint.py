"""The install command a missing extra's error prints works for this installation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import edge.install_hint
from edge.errors import MissingDependencyError
from edge.install_hint import install_command

CHECKOUT = Path(__file__).resolve().parents[1]


def test_a_source_install_is_told_to_install_from_its_checkout():
    """edge-runtime is not on PyPI: `pip install 'edge-runtime[convert]'` found nothing."""
    assert install_command("demo") == f"pip install -e '{CHECKOUT}[demo]'"
    error = MissingDependencyError("amqtt", "demo", "the embedded demo broker")
    assert f"install it with: pip install -e '{CHECKOUT}[demo]'" in str(error)


def test_pytorch_goes_first_where_the_extra_needs_it_and_it_is_missing(monkeypatch):
    assert install_command("convert") == f"pip install -e '{CHECKOUT}[convert]'"  # torch is here
    real = importlib.util.find_spec
    monkeypatch.setattr(edge.install_hint.importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    command = install_command("convert")
    assert command.startswith("pip install torch==2.13.0 (without an NVIDIA GPU add "
                              "--index-url https://download.pytorch.org/whl/cpu), then ")
    assert command.endswith(f"pip install -e '{CHECKOUT}[convert]'")
    assert "torch" not in install_command("demo")
