"""`edge` commands run in this process for the converter tests, and what they returned."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.cli import main


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def edge(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """`edge ARGS` in this process (an exception other than EdgeError fails the test, as a
    traceback would)."""

    def run(*args: str | Path) -> Result:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def assert_refused(result: Result, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


