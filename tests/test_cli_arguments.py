"""Command-line number arguments: what each accepts, and argparse's exit 2 for the rest."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from edge.cli.common import (
    parse_fraction,
    parse_non_negative_float,
    parse_non_negative_int,
    parse_positive_float,
    parse_positive_int,
)

TEXTS = ["0", "-1", "0.5", "2", "1.5", "nan", "inf", "x", ""]
ACCEPTED = {
    parse_fraction: {"0.5": 0.5},
    parse_positive_int: {"2": 2},
    parse_non_negative_int: {"0": 0, "2": 2},
    parse_positive_float: {"0.5": 0.5, "2": 2.0, "1.5": 1.5},
    parse_non_negative_float: {"0": 0.0, "0.5": 0.5, "2": 2.0, "1.5": 1.5},
}


@pytest.mark.parametrize("parse", list(ACCEPTED), ids=lambda f: f.__name__)
def test_number_arguments_accept_exactly_their_range(parse):
    for text in TEXTS:
        if text in ACCEPTED[parse]:
            assert parse(text) == ACCEPTED[parse][text]
        else:
            with pytest.raises(argparse.ArgumentTypeError, match=f"{text!r} must be"):
                parse(text)


@pytest.mark.parametrize("args", [
    ["demo", "--seconds", "0"], ["run", "--config", "x.toml", "--seconds", "-1"],
    ["monitor", "--seconds", "0"], ["bench", "m.onnx", "--threads", "-1"],
    ["eval", "m.onnx", "--data", "d", "--max-images", "0"],
])
def test_nonsense_durations_and_counts_exit_2_before_anything_runs(args):
    result = subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "must be" in result.stderr, result.stderr


def test_counts_read_as_english():
    from edge.wording import counted

    assert [counted(n, "image") for n in (0, 1, 2)] == ["0 images", "1 image", "2 images"]
    assert counted(1, "camera frame") == "1 camera frame"


def test_a_threshold_of_zero_is_refused_in_words_that_exclude_it():
    with pytest.raises(argparse.ArgumentTypeError, match="'0' must be a number above 0 and "
                                                         "below 1"):
        parse_fraction("0")
