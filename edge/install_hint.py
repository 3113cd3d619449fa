"""The pip command that adds an extra to this installation, as the user installed it.

From a source checkout (the README's `pip install -e '.[cpu,demo]'`) the command names that
checkout, from a wheel file that wheel; `edge-runtime[extra]` would send pip to PyPI, where
the project is not. It runs this interpreter's pip (`python -m pip`): a bare `pip` outside the
activated venv is often another Python's. PyTorch goes first where the extra needs it: a plain
`torch` requirement pulls the multi-GB CUDA build.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

DISTRIBUTION = "edge-runtime"
#: As the README and CI pin it.
TORCH = "torch==2.13.0"
TORCH_NOTE = ("without an NVIDIA GPU, add --index-url https://download.pytorch.org/whl/cpu to "
              "the torch install: PyPI's Linux torch is the multi-GB CUDA build")
#: The demo's own modules as the `demo` extra requires them, each enough alone: on a Jetson
#: the extra itself would also bring pip's OpenCV and NumPy 2 over JetPack's (a user check).
DEMO_ALONE = {"motmetrics": "'motmetrics>=1.4'", "amqtt": "'amqtt>=0.11'"}


def install_command(extra: str) -> str:
    """A shell line that installs `extra` into this interpreter's environment the way the
    package was installed (editable checkout, folder, wheel, or by name); where PyTorch must
    come first, its note is a shell comment, so the whole line pastes."""
    pip = f"{shlex.quote(sys.executable)} -m pip install"
    source, editable = _installed_from()
    target = shlex.quote(f"{source or DISTRIBUTION}[{extra}]")
    command = f"{pip} {'-e ' if editable else ''}{target}"
    if extra == "convert" and importlib.util.find_spec("torch") is None:
        return f"{pip} {TORCH} && {command}  # {TORCH_NOTE}"
    return command


def install_packages(requirements: str) -> str:
    """A shell line that installs `requirements` (shell-quoted already) into this
    interpreter's environment."""
    return f"{shlex.quote(sys.executable)} -m pip install {requirements}"


def _installed_from() -> tuple[str | None, bool]:
    """(the local folder or file pip installed this distribution from, whether editable):
    PEP 610's direct_url.json, or the checkout whose own metadata (an .egg-info beside
    pyproject.toml) was found first; (None, False) when installed from an index."""
    # here, on the way to a message: imported at start it cost every command 20 ms
    from importlib import metadata  # noqa: PLC0415

    try:
        distribution = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None, False
    recorded = distribution.read_text("direct_url.json")
    if recorded:
        try:
            origin = json.loads(recorded)
            url = urlparse(origin.get("url", ""))
            editable = bool(origin.get("dir_info", {}).get("editable", False))
        except (ValueError, AttributeError):
            return None, False
        if url.scheme != "file" or not Path(unquote(url.path)).exists():
            return None, False
        return unquote(url.path), editable
    folder = Path(str(distribution.locate_file(""))).resolve()
    if (folder / "pyproject.toml").is_file():
        return str(folder), True
    return None, False
