"""The `edge` executable as a process: no spinning BLAS threads, a quiet Ctrl-C from the first
moment, its exit code, a clean end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import edge.__main__
import edge.cli

THREADS_AFTER_IMPORTS = (
    "import os, {first}numpy, cv2, onnxruntime; "
    "print(os.environ.get('OPENBLAS_NUM_THREADS'), len(os.listdir('/proc/self/task')))")


def _run(code: str, **env: str) -> tuple[str, int]:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("OPENBLAS_NUM_THREADS", "OPENCV_LOG_LEVEL")}
    environment.update(env)
    output = subprocess.run([sys.executable, "-c", code], env=environment, check=True,
                            capture_output=True, text=True).stdout.split()
    return output[0], int(output[1])


def test_the_cli_starts_numpy_and_opencv_with_one_blas_thread():
    setting, threads = _run(THREADS_AFTER_IMPORTS.format(first="edge.cli, "))
    assert setting == "1"
    # the same threads as a process told so explicitly (OpenBLAS starts cores - 1 workers)
    _, single = _run(THREADS_AFTER_IMPORTS.format(first=""), OPENBLAS_NUM_THREADS="1")
    assert threads == single


def test_a_users_blas_setting_wins():
    setting, _ = _run(THREADS_AFTER_IMPORTS.format(first="edge.cli, "), OPENBLAS_NUM_THREADS="3")
    assert setting == "3"


def test_opencvs_own_warnings_are_off_unless_the_user_wants_them():
    code = "import os, edge.cli; print(os.environ['OPENCV_LOG_LEVEL'], 0)"
    assert _run(code)[0] == "ERROR"
    assert _run(code, OPENCV_LOG_LEVEL="WARNING")[0] == "WARNING"


def test_onnx_runtimes_telemetry_is_off_unless_the_user_wants_it(tmp_path):
    """ONNX Runtime 1.32 kept a device id and an event store under $HOME/.cache/Microsoft
    from its import on, and a service user's home that does not exist drew its warning into
    every log (a user check)."""
    code = "import edge.cli, onnxruntime"
    environment = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    home = tmp_path / "home"
    home.mkdir()
    for user_home in (home, tmp_path / "nowhere" / "home"):  # the second never made
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**environment, "HOME": str(user_home)}, check=True)
        assert "telemetry" not in run.stderr, run.stderr
    assert list(home.rglob("*")) == [] and not (tmp_path / "nowhere").exists()
    wanted = subprocess.run([sys.executable, "-c", "import os, edge.cli; "
                             "print(os.environ['ORT_DISABLE_TELEMETRY'])"], check=True,
                            env={**environment, "ORT_DISABLE_TELEMETRY": "0"},
                            capture_output=True, text=True)
    assert wanted.stdout.strip() == "0"


def test_the_executable_exits_with_mains_code(monkeypatch):
    monkeypatch.setattr(edge.cli, "main", lambda: 3)
    # `run` ignores SIGTERM and SIGINT for the interpreter's teardown and hooks the imports:
    # left so, every later test's child process inherited the ignored signals (a SIGTERM
    # test's child then restored SIG_IGN, not SIG_DFL)
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    handlers = {each: signal.getsignal(each) for each in (signal.SIGTERM, signal.SIGINT)}
    try:
        with pytest.raises(SystemExit) as exited:
            edge.__main__.run()
    finally:
        for each, handler in handlers.items():
            signal.signal(each, handler)
    assert exited.value.code == 3


def test_convert_through_the_executable_ends_with_a_clean_stderr(tmp_path):
    """The interpreter's shutdown must free what the command made: with the collector frozen
    before it (tried for speed), onnxsim's nanobind objects outlived it and every `edge
    convert` ended with ~25 lines of "nanobind: leaked ..."."""
    pytest.importorskip("onnxsim")
    from tests.converters.exporter_graphs import classifier

    source = classifier(tmp_path / "m.onnx", batch=1, opset=13, constants=False,
                        ending="softmax")
    done = subprocess.run([sys.executable, "-m", "edge", "convert", str(source), "-o",
                           str(tmp_path / "out.onnx"), "--labels", "a,b,c"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "leaked" not in done.stderr, done.stderr


def test_python_m_edge_is_the_executable():
    done = subprocess.run([sys.executable, "-m", "edge", "inspect", "missing.onnx"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "missing.onnx" in done.stderr


@pytest.mark.parametrize("json_line", [False, True])
def test_ctrl_c_while_the_command_line_loads_exits_130_without_a_traceback(json_line):
    """With --json the last line says so (a user check: Ctrl-C in the first 0.15 s of
    `edge demo --json` left stdout empty)."""
    interrupting_import = textwrap.dedent("""
        import sys
        class Interrupting:
            def find_spec(self, name, path=None, target=None):
                if name == "edge.cli":
                    raise KeyboardInterrupt  # as Ctrl-C in the middle of numpy's import
        sys.meta_path.insert(0, Interrupting())
        from edge.__main__ import run
        run()
    """)
    done = subprocess.run([sys.executable, "-c", interrupting_import, "demo",
                           *(["--json"] if json_line else [])], capture_output=True, text=True)
    assert done.returncode == 130
    assert done.stderr.strip() == "edge: interrupted"
    if json_line:
        assert json.loads(done.stdout) == {
            "error": "interrupted (SIGINT) before the command finished", "exit_code": 130}
    else:
        assert done.stdout == ""


def test_ctrl_c_while_the_arguments_are_parsed_exits_130_without_a_traceback():
    interrupted_parse = textwrap.dedent("""
        import edge.cli
        def build_parser():
            raise KeyboardInterrupt  # as Ctrl-C while argparse builds the subcommands
        edge.cli.build_parser = build_parser
        from edge.__main__ import run
        run()
    """)
    done = subprocess.run([sys.executable, "-c", interrupted_parse], capture_output=True,
                          text=True)
    assert done.returncode == 130
    assert done.stderr.strip() == "edge: interrupted"
