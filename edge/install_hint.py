"""The pip command that adds an extra to this installation, as the user installed it.

From a source checkout (the README's `pip install -e '.[cpu,demo]'`) the command names that
checkout; `edge-runtime[extra]` would send pip to PyPI, where it is not. PyTorch goes first
where the extra needs it: a plain `torch` requirement pulls the multi-GB CUDA build.
"""

from __future__ import annotations

import importlib.util
import json
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

DISTRIBUTION = "edge-runtime"
#: As the README and CI install it; without an NVIDIA GPU, PyTorch's CPU index is the small one.
TORCH_FIRST = ("pip install torch==2.13.0 (without an NVIDIA GPU add --index-url "
               "https://download.pytorch.org/whl/cpu), then ")


def install_command(extra: str) -> str:
    """`pip install ...` for `extra`, from the checkout this package was installed from when
    it was (editable or not), else by name."""
    checkout = _source_checkout()
    command = (f"pip install -e '{checkout}[{extra}]'" if checkout
               else f"pip install '{DISTRIBUTION}[{extra}]'")
    needs_torch = extra == "convert" and importlib.util.find_spec("torch") is None
    return (TORCH_FIRST if needs_torch else "") + command


def _source_checkout() -> str | None:
    """The local folder pip installed this distribution from (PEP 610's direct_url.json), or
    the checkout whose own metadata (an .egg-info beside pyproject.toml) was found first."""
    try:
        distribution = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    recorded = distribution.read_text("direct_url.json")
    if recorded:
        try:
            url = urlparse(json.loads(recorded).get("url", ""))
        except (ValueError, AttributeError):
            return None
        return unquote(url.path) if url.scheme == "file" else None
    folder = Path(str(distribution.locate_file(""))).resolve()
    return str(folder) if (folder / "pyproject.toml").is_file() else None
