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


@pytest.mark.parametrize(("argv", "message"), [
    (["convert", "m.onnx", "-o", "o.onnx", "--mean", "0.485,0.456"],
     "edge convert: error: argument --mean: '0.485,0.456' must be one number (for every "
     "channel) or three, e.g. 0.5 or 0.485,0.456,0.406 (edge convert --help lists the "
     "options)\n"),
    # user checks: --opset 9-12 wrote a model calibrate crashed on (per-channel INT8 needs
    # 13), and --input-size 100000 was PyTorch's allocation traceback
    (["convert", "m.pt", "-o", "o.onnx", "--opset", "12"],
     "edge convert: error: argument --opset: '12' must be an opset of 13 or later (INT8's "
     "per-channel weights need 13) (edge convert --help lists the options)\n"),
    (["convert", "m.pt", "-o", "o.onnx", "--input-size", "100000"],
     "edge convert: error: argument --input-size: '100000' is larger than a model input can "
     "be: at most 16384 pixels a side (edge convert --help lists the options)\n"),
    (["calibrate", "m.onnx", "--images", "d", "-o", "o.onnx", "--max-images", "x"],
     "edge calibrate: error: argument --max-images: 'x' must be a whole number >= 1 "
     "(edge calibrate --help lists the options)\n"),
    # argparse handed a subcommand's unknown arguments up to `edge`, whose usage lists no
    # option of `edge convert`; a misspelt option is named with the one meant (user checks)
    (["convert", "m.onnx", "-o", "o.onnx", "--bogus", "1"],
     "edge convert: error: unrecognized arguments: --bogus 1 (edge convert --help lists the "
     "options)\n"),
    (["convert", "m.onnx", "-o", "o.onnx", "--lables", "a,b"],
     "edge convert: error: unrecognized arguments: --lables a,b; --lables is not an option of "
     "edge convert: did you mean --labels? (edge convert --help lists the options)\n"),
    (["inspect", "a.onnx", "b.onnx"],
     "edge inspect: error: unrecognized arguments: b.onnx (edge inspect --help lists the "
     "options)\n"),
    (["calibrat", "m.onnx"],
     "edge: error: argument COMMAND: invalid choice: 'calibrat' (choose from 'demo', 'run', "
     "'monitor', 'build-engine', 'selftest', 'probe', 'bench', 'convert', 'inspect', "
     "'calibrate', 'eval', 'collect'); did you mean calibrate? (edge --help lists the "
     "options)\n"),
    (["calibrate", "m.onnx", "--images", "d", "-o", "o.onnx", "--profile", "tensort"],
     "edge calibrate: error: argument --profile: invalid choice: 'tensort' (choose from "
     "'tensorrt', 'cpu'); did you mean tensorrt? (edge calibrate --help lists the options)\n"),
    # argparse took `--max-image` for --max-images: a script with it would break the day
    # another option starting alike came
    (["calibrate", "m.onnx", "--images", "d", "-o", "o.onnx", "--max-image", "8"],
     "edge calibrate: error: unrecognized arguments: --max-image 8; --max-image is not an "
     "option of edge calibrate: did you mean --max-images? (edge calibrate --help lists the "
     "options)\n"),
    # a user check: `--cache=` was read as `.`, then "--cache . is a folder"
    (["calibrate", "m.onnx", "--images", "d", "-o", "o.onnx", "--cache="],
     "edge calibrate: error: argument --cache: an empty path; give a file or folder name "
     "(edge calibrate --help lists the options)\n"),
    (["calibrate", "m.onnx", "--images=", "-o", "o.onnx"],
     "edge calibrate: error: argument --images: an empty path; give a file or folder name "
     "(edge calibrate --help lists the options)\n"),
    (["eval", "m.onnx", "--data="],
     "edge eval: error: argument --data: an empty path; give a file or folder name (edge eval "
     "--help lists the options)\n"),
    (["inspect", ""],
     "edge inspect: error: argument model: an empty path; give a file or folder name (edge "
     "inspect --help lists the options)\n"),
    # edge's own option after the command (a user check: nothing said where it goes)
    (["inspect", "m.onnx", "--log-level", "debug"],
     "edge inspect: error: unrecognized arguments: --log-level debug; --log-level is an option "
     "of edge itself: give it before the command (edge --log-level ... inspect ...) (edge "
     "inspect --help lists the options)\n"),
    # ... and where an abbreviation's value was then taken for the command, it is named
    (["--log", "DEBUG", "inspect", "m.onnx"],
     "edge: error: --log is not an option of edge: did you mean --log-level? ('DEBUG', after "
     "it, was read as COMMAND; edge --help lists the options)\n"),
])
def test_a_bad_option_value_or_an_unknown_argument_is_said_in_one_line(argv, message, capsys):
    """The message names the option and what it takes; a screen of usage above it buried it
    (a user check: `--mean 0.485,0.456`)."""
    assert _refused(argv, capsys) == message


@pytest.mark.parametrize(("argv", "meant"), [
    (["evla", "m.onnx"], "eval"),  # letters swapped
    (["calibrate", "m.onnx", "--images", "d", "-o", "o.onnx", "--profile", "TensorRT"],
     "tensorrt"),  # another case
    (["convert", "m.onnx", "-o", "o.onnx", "--resize", "letter"], "letterbox"),  # begun
])
def test_a_misspelt_name_is_matched_by_its_letters_or_its_start(argv, meant, capsys):
    assert f"; did you mean {meant}? (" in _refused(argv, capsys)


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """What `edge ARGV` writes to stderr as argparse refuses it with exit 2."""
    from edge.cli import main

    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["convert", "m.onnx", "--input-size", "64", "--mean", "0.1,0.2", "-o", "o.onnx", "--json"],
    ["convert", "m.onnx", "--input-size", "64", "--json"],  # -o missing: usage, then JSON
    ["calibrate", "m.onnx", "--images", "d", "-o", "o.onnx", "--profile", "gpu", "--json"],
    ["eval", "m.onnx", "--json", "--nope"],  # unknown, after --json
])
def test_a_refused_json_command_line_ends_with_its_errors_json_line(argv, capsys):
    """A user check: errors in the options themselves left stdout empty under --json, where
    every other failure ends with `{"error": ..., "exit_code": 2}`."""
    import json

    from edge.cli import main

    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    last = json.loads(out.strip().splitlines()[-1])
    assert last["exit_code"] == 2 and last["error"] and last["error"] in err
    assert last["error"].startswith(("argument ", "the following arguments", "unrecognized"))
    assert len(out.splitlines()) == 1


def test_missing_arguments_keep_the_usage(capsys):
    err = _refused(["convert", "m.onnx"], capsys)
    assert err.startswith("usage: edge convert ")
    assert err.endswith("edge convert: error: the following arguments are required: -o/--output\n")


def test_a_missing_argument_names_the_misspelt_option_meant_for_it(capsys):
    """`--imagse photos` left --images missing, and the message never named the typo."""
    err = _refused(["calibrate", "m.onnx", "--imagse", "photos", "-o", "o.onnx"], capsys)
    assert err.startswith("usage: edge calibrate ")
    assert err.endswith("edge calibrate: error: the following arguments are required: --images; "
                        "--imagse is not an option of edge calibrate: did you mean --images?\n")
    # an option nothing is like is still named (`--frames` read as `--ranges` once)
    assert _refused(["calibrate", "m.onnx", "--frames", "photos", "-o", "o.onnx"],
                    capsys).endswith("required: --images; --frames is not an option of edge "
                                     "calibrate\n")


def test_a_refusal_after_parsing_names_its_command(tmp_path, capsys):
    """Refusals that come after parsing start as argparse's own do: `edge calibrate: error:`."""
    from edge.cli import main

    missing = tmp_path / "missing.onnx"
    code = main(["calibrate", str(missing), "--images", str(tmp_path), "-o",
                 str(tmp_path / "o.onnx")])
    assert code == 2
    assert capsys.readouterr().err.startswith(
        f"edge calibrate: error: model file {missing} does not exist")


def test_counts_read_as_english():
    from edge.wording import counted

    assert [counted(n, "image") for n in (0, 1, 2)] == ["0 images", "1 image", "2 images"]
    assert counted(1, "camera frame") == "1 camera frame"
    assert [counted(2, noun) for noun in ("class", "category", "day")] == [
        "2 classes", "2 categories", "2 days"]


def test_a_threshold_of_zero_is_refused_in_words_that_exclude_it():
    with pytest.raises(argparse.ArgumentTypeError, match="'0' must be a number above 0 and "
                                                         "below 1"):
        parse_fraction("0")


def test_the_log_level_is_taken_in_either_case():
    """The config's `[log] level` is lowercase (`debug`); the option refused it."""
    from edge.cli import build_parser

    assert build_parser().parse_args(["--log-level", "debug", "inspect", "m.onnx"]).log_level \
        == "DEBUG"


def test_a_bad_log_level_is_named_as_it_was_typed(capsys):
    """It was echoed upper-cased (`invalid choice: 'VERBOSE'` for `verbose`)."""
    from edge.cli import build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--log-level", "verbose", "inspect", "m.onnx"])
    assert exited.value.code == 2
    assert "argument --log-level: invalid level 'verbose' (choose from DEBUG, INFO, WARNING, " \
           "ERROR, in either case)" in capsys.readouterr().err


def test_every_option_of_every_command_says_what_it_is_for():
    """`edge build-engine --help` listed --workspace-mb, --engine-dir and --gpu-memory bare."""
    from edge.cli import build_parser

    commands = next(a for a in build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction))
    bare = [f"{name} {action.option_strings[0] if action.option_strings else action.dest}"
            for name, parser in commands.choices.items() for action in parser._actions
            if not action.help and not isinstance(action, argparse._HelpAction)]
    assert bare == []
