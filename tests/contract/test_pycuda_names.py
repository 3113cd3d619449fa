"""Every pycuda name the pycuda adapter uses exists in pycuda's own source, for the oldest and
the newest pycuda we support. pycuda only builds where CUDA is installed, so the check reads the
sdist (downloaded with `pip download --no-binary`, cached) instead of importing it: the
Boost.Python registrations in src/wrapper/*.cpp and the Python in pycuda/*.py."""

from __future__ import annotations

import ast
import re
import tarfile
from pathlib import Path

import pytest

from edge.file_lock import held
from tests.contract.conftest import _pip, cache_root

pytestmark = pytest.mark.contract

PYCUDA = ("2022.2", "2026.1")
ADAPTER = Path(__file__).resolve().parents[2] / "edge" / "gpu" / "pycuda.py"
#: Expressions in the adapter whose attributes are pycuda's (the module, its objects).
PYCUDA_ROOTS = {"self._cuda", "self._device", "self._context", "array.base", "stream", "s",
                "event", "self._cuda.Context"}
#: Keyword arguments we pass to pycuda, and the function whose registration must name them.
KEYWORDS = {"mem_flags": "pagelocked_empty", "flags": "make_context"}


def _root(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_root(node.value)}.{node.attr}"
    return ""


def names_used() -> set[str]:
    """pycuda attribute names the adapter's source touches."""
    tree = ast.parse(ADAPTER.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _root(node.value) in PYCUDA_ROOTS:
            found.add(node.attr)
        if isinstance(node, ast.Attribute) and _root(node.value).startswith("self._cuda."):
            found.add(node.attr)  # e.g. ctx_flags.MAP_HOST, device_attribute.INTEGRATED
    return found


@pytest.fixture(scope="module", params=PYCUDA)
def pycuda_source(request) -> str:
    """The text of pycuda's C++ wrapper and Python modules, from its sdist."""
    folder = cache_root() / "sdists"
    sdist = folder / f"pycuda-{request.param}.tar.gz"
    with held(cache_root() / ".lock"):  # pytest's workers fill the cache one at a time
        if not sdist.is_file():
            _pip("download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
                 "-d", str(folder), f"pycuda=={request.param}")
    texts = []
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            if re.search(r"/(src/wrapper/[^/]+\.cpp|pycuda/[^/]+\.py)$", member.name):
                handle = archive.extractfile(member)
                assert handle is not None
                texts.append(handle.read().decode("utf-8", "replace"))
    return "\n".join(texts)


def registered(source: str, name: str) -> bool:
    return bool(re.search(rf'"{name}"|(?:DEF_SIMPLE_METHOD|DEF_SIMPLE_FUNCTION|DECLARE_EXC)'
                          rf"\({name}\b|^\s*def {name}\(|^{name} = ", source, re.MULTILINE))


def test_extraction_finds_what_the_adapter_uses():
    used = names_used()
    assert {"init", "Device", "make_context", "MAP_HOST", "pagelocked_empty", "DEVICEMAP",
            "get_device_pointer", "memcpy_htod_async", "Stream", "handle", "Event", "record",
            "event_flags", "BLOCKING_SYNC", "DISABLE_TIMING",
            "synchronize", "get_current", "pop", "detach", "Error"} <= used


def test_every_name_exists_in_pycuda(pycuda_source):
    missing = sorted(n for n in names_used() if not registered(pycuda_source, n))
    assert not missing, f"not in pycuda's source: {missing}"


def test_keywords_we_pass_are_declared(pycuda_source):
    for keyword, function in KEYWORDS.items():
        registration = re.search(rf'"{function}"[^;]*?;', pycuda_source, re.DOTALL)
        assert registration and re.search(rf'args?\("{keyword}"\)', registration.group(0)), (
            keyword, function)


def test_a_misspelled_name_is_caught(pycuda_source):
    assert not registered(pycuda_source, "make_contxt")
    assert not registered(pycuda_source, "DEVICE_MAP")
