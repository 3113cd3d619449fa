"""SIGTERM / Ctrl-C as a stop request that a signal handler sets without taking a lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from edge.cli.signals import SignalStop


def run_python(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=120)


def test_wait_times_out_then_sees_set():
    stop = SignalStop(starting=False)
    began = time.monotonic()
    assert stop.wait(0.12) is False and time.monotonic() - began >= 0.12
    stop.set()
    assert stop.is_set() and stop.wait(5) is True


def test_a_signal_landing_anywhere_in_a_tight_wait_loop_stops_it():
    """The old handler set a threading.Event, whose lock the main thread holds for a moment
    inside Event.wait: a signal landing there deadlocked the handler (a daemon that logged
    "received SIGTERM" and never stopped). 300 signals fired at random moments into a loop that
    does nothing but wait must each end it, and the log line come once per stop."""
    script = textwrap.dedent("""
        import logging, os, random, signal, sys, threading, time
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
        from edge.cli.signals import stop_on_signals
        for i in range(300):
            stop = stop_on_signals()
            delay = random.uniform(0, 0.004)
            which = signal.SIGTERM if i % 2 else signal.SIGINT
            threading.Timer(delay, os.kill, (os.getpid(), which)).start()
            while not stop.wait(0.0):
                pass
        print("done")
    """)
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "done"
    assert lines.count("received SIGTERM; stopping") == 150
    assert lines.count("received SIGINT; stopping") == 150


def test_one_stop_however_many_signals_and_none_at_teardown():
    """A second SIGTERM or Ctrl-C during the stop, or during the interpreter's teardown after
    it (when Python puts the default handlers back), killed the process: exit 143 / 130 after
    a clean stop. Now the first signal asks for the stop and the rest are ignored."""
    result = run_python("""
        import logging, os, signal, sys, threading, time
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
        from edge.cli.signals import stop_on_signals
        stop = stop_on_signals()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.wait(5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        # and one more while Python shuts down
        threading.Timer(0.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
        print("done")
    """)
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert result.stdout.splitlines() == ["received SIGTERM; stopping", "done"]


def test_a_signal_while_starting_interrupts_with_the_shells_exit_code():
    """While `edge run` still loads its model there is nothing to wind down: SIGTERM ends it
    at once as "interrupted", exit 143 (it was killed silently: no line, exit -15)."""
    result = run_python("""
        import os, signal, sys, time
        from edge.cli.signals import stop_on_signals
        from edge.interruption import Interrupted
        stop = stop_on_signals(starting=True)
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Interrupted as exc:
            print("interrupted", exc.exit_code)
        stop.started()
        os.kill(os.getpid(), signal.SIGTERM)
        print("stop requested", stop.wait(5))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["interrupted 143", "stop requested True"]


def test_sigterm_interrupts_a_command_like_ctrl_c_and_unwinds():
    """Inside `signals_interrupt` SIGTERM raises `Interrupted` (exit 143), so `with` blocks
    unwind and temporary files go; a command's own handler, installed inside, is left in place
    (the daemon's stop ignores further signals), and otherwise the previous one comes back."""
    result = run_python("""
        import os, signal, tempfile, time
        from pathlib import Path
        from edge.cli.signals import signals_interrupt, stop_on_signals
        from edge.interruption import Interrupted
        folder = None
        try:
            with signals_interrupt(), tempfile.TemporaryDirectory() as folder:
                Path(folder, "partial.onnx").write_bytes(b"x")
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
        except Interrupted as exc:
            print("interrupted", exc.exit_code, os.path.exists(folder))
        print("restored", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
        with signals_interrupt():
            stop = stop_on_signals()
        os.kill(os.getpid(), signal.SIGTERM)
        print("own handler kept", stop.wait(5))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["interrupted 143 False", "restored True",
                                          "own handler kept True"]


@pytest.mark.parametrize(("handled", "printed"), [
    # raised inside a finalizer, a handler's exception is only printed ("Exception ignored")
    # and the command carries on: when it finishes, the signal still makes it exit 143
    ("pass", ["carried on", "interrupted 143 None"]),
    # a native module interrupted while it loads raises its own exception from the signal's
    # (ONNX Runtime: "ImportError: initialization failed"): still the signal, not a traceback
    ("raise ImportError('initialization failed') from exc", ["interrupted 143 ImportError"]),
], ids=["swallowed", "wrapped"])
def test_a_signal_whose_exception_was_swallowed_or_wrapped_still_ends_the_command(handled,
                                                                                   printed):
    result = run_python(f"""
        import os, signal, time
        from edge.cli.signals import signals_interrupt
        from edge.interruption import Interrupted
        try:
            with signals_interrupt():
                try:
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(5)
                except Interrupted as exc:
                    {handled}
                print("carried on")
        except Interrupted as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ else None
            print("interrupted", exc.exit_code, cause)
        with signals_interrupt():
            pass
        print("nothing pending")
        try:
            with signals_interrupt():
                raise ImportError("missing")
        except ImportError as exc:
            print("without a signal:", exc)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [*printed, "nothing pending",
                                          "without a signal: missing"]


def test_a_signal_a_finalizer_swallowed_publishes_nothing_and_prints_no_traceback(tmp_path):
    """A user check: Ctrl-C landing in a garbage collector's finalizer printed "Exception
    ignored in: ... Traceback ... Interrupted: SIGINT", then the command wrote every output and
    exited 130. Now nothing is printed for it, the next output to be put in place (staged or
    a single atomic write) raises it instead, and nothing is written."""
    result = run_python(f"""
        import gc, os, signal, time
        from pathlib import Path
        from edge.cli.signals import signals_interrupt
        from edge.files import StagedOutputs, write_bytes_atomic
        from edge.interruption import Interrupted

        class Finalized:
            def __del__(self):  # the signal lands here: Python reports it and goes on
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.5)

        out = Path({str(tmp_path)!r})
        for how in ("staged", "atomic"):
            try:
                with signals_interrupt():
                    cycle = Finalized()
                    cycle.me = cycle
                    del cycle
                    gc.collect()
                    print("carried on", how)
                    if how == "staged":
                        with StagedOutputs() as staged:
                            staged.file(out / "model.onnx").write_bytes(b"int8")
                            staged.publish()
                    else:
                        write_bytes_atomic(out / "model.onnx", b"int8")
                    print("published")
            except Interrupted as exc:
                print("interrupted", exc.exit_code, sorted(p.name for p in out.iterdir()))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["carried on staged", "interrupted 130 []",
                                          "carried on atomic", "interrupted 130 []"]
    assert "Exception ignored" not in result.stderr and "Traceback" not in result.stderr


def test_sigterm_while_onnxruntime_loads_exits_143_not_missing_or_traceback(tmp_path):
    """End to end: an `onnxruntime` that, like the real one's native module, turns the signal
    landing in its initialisation into an ImportError. `edge eval` used to say ONNX Runtime
    was not installed (exit 2); `edge calibrate` printed a traceback (exit 1)."""
    fake = tmp_path / "site" / "onnxruntime"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(textwrap.dedent("""
        import os, signal, time
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except BaseException as exc:
            raise ImportError("initialization failed") from exc
    """))
    model = tmp_path / "model.onnx"
    model.write_bytes(bytes(range(1, 256)))  # not read: the import comes first
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path / "site"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    for command in (["eval", str(model), "--data", str(tmp_path)],
                    ["calibrate", str(model), "--images", str(tmp_path), "-o",
                     str(tmp_path / "out.onnx")]):
        done = subprocess.run([sys.executable, "-m", "edge", *command], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 143, (command, done.stderr)
        assert "edge: interrupted" in done.stderr
        assert "Traceback" not in done.stderr and "not installed" not in done.stderr
        assert not (tmp_path / "out.onnx").exists()


def _signalled(process: subprocess.Popen[bytes], signum: int) -> tuple[bytes, bytes]:
    """Its output once `signum` ended it; killed if it did not within 30 s (a daemon that
    ignored the signal must not outlive the test)."""
    process.send_signal(signum)
    try:
        return process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise


@pytest.mark.slow
def test_a_hangup_stops_edge_run_cleanly_unless_nohup_ignores_it(tmp_path, mosquitto,
                                                                  demo_model):
    """The terminal or ssh session of a daemon started by hand goes away: SIGHUP's default
    ended `edge run` at once (exit 129, no summary, no `stopped` status, the outbox lost; an
    operator's check). It now stops as SIGTERM does. Started under `nohup` (SIGHUP ignored),
    the daemon keeps running through a hangup."""
    from tests.mqtt_watch import Watcher, retained_status
    from tests.test_daemon_mqtt import PREFIX, write_config

    command = [sys.executable, "-m", "edge", "run", "--json", "--config",
               str(write_config(tmp_path, demo_model, mosquitto.port))]
    # as from a terminal, whatever this test process inherited (CI run under nohup ignores it)
    from_a_terminal = [sys.executable, "-c", "import os, signal, sys; signal.signal("
                       "signal.SIGHUP, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"]
    with Watcher(mosquitto.port, f"{PREFIX}/#") as watcher:
        daemon = subprocess.Popen([*from_a_terminal, *command], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        try:
            watcher.wait_for(lambda: len(watcher.on("/gate/detections")) >= 5, 60,
                             "detections")
        finally:
            out, err = _signalled(daemon, signal.SIGHUP)
        assert daemon.returncode == 0, err.decode()
        assert "received SIGHUP; stopping" in err.decode()
        summary = json.loads(out.decode().strip().splitlines()[-1])
        assert summary["published"] == summary["produced"] > 0
        stopped = retained_status(mosquitto.port, PREFIX)
        assert stopped["state"] == "stopped", stopped

        ignoring = subprocess.Popen(["nohup", *command], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        try:
            seen = len(watcher.on("/gate/detections"))
            watcher.wait_for(lambda: len(watcher.on("/gate/detections")) >= seen + 5, 60,
                             "detections under nohup")
            ignoring.send_signal(signal.SIGHUP)
            seen = len(watcher.on("/gate/detections"))
            watcher.wait_for(lambda: len(watcher.on("/gate/detections")) >= seen + 10, 30,
                             "detections after the hangup")
            assert ignoring.poll() is None
        finally:
            _, err = _signalled(ignoring, signal.SIGTERM)
        assert ignoring.returncode == 0 and "SIGHUP" not in err.decode(), err.decode()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_after_the_command_has_finished_does_not_fail_it(tmp_path, signum):
    """`timeout 2 edge convert ...` exited 143 four times in four after the converted model
    and its parity line were written: the signal landed in the interpreter's teardown."""
    flag = tmp_path / "tearing-down"
    code = textwrap.dedent(f"""
        import atexit, time
        import edge.cli
        edge.cli.main = lambda: 0  # a command that has finished
        atexit.register(lambda: (open({str(flag)!r}, "w").close(), time.sleep(3)))
        from edge.__main__ import run
        run()
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert flag.exists()
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr


def test_an_error_in_the_interruptions_own_unwinding_still_exits_with_the_signal():
    """In CI, Ctrl-C as `edge demo` started its MQTT thread landed inside threading's own lock
    handling, whose clean-up then failed (`RuntimeError: release unlocked lock`): a traceback
    and exit 1, not 130 and the --json line."""
    result = run_python("""
        import os, signal, sys, time
        import edge.cli.device as device
        from edge.cli.signals import stop_on_signals

        def starting(args):
            stop_on_signals(starting=True)
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
            finally:
                raise RuntimeError("release unlocked lock")

        device.cmd_demo = starting
        sys.argv = ["edge", "demo", "--json"]
        from edge.__main__ import run
        run()
    """)
    assert result.returncode == 130, result.stderr
    assert "edge: interrupted" in result.stderr and "Traceback" not in result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "error": "interrupted (SIGINT) before the command finished", "exit_code": 130}
