"""Keeps a private broker no longer than the process that started it: `python -m
edge.broker_keeper FOLDER BROKER ARGS...` runs the broker until this process's stdin closes
(the parent, which holds the pipe's other end, exited, however it died: SIGKILL and the OOM
killer included) or it is sent SIGTERM, then stops it and removes FOLDER (its config).

A user check found `edge bench`'s Mosquitto still listening after the bench was killed; the
kernel's parent-death signal cannot do this job, since Mosquitto started as root changes its
user, which clears that signal.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
from types import FrameType

#: Seconds the broker gets to exit on SIGTERM before it is killed.
STOP_S = 5.0


def main(argv: list[str]) -> int:
    folder, command = argv[0], argv[1:]
    broker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(signum: int | None = None, frame: FrameType | None = None) -> None:
        broker.terminate()

    def stop_when_orphaned() -> None:
        sys.stdin.buffer.read()  # returns at end of file: the parent's end is closed
        stop()

    signal.signal(signal.SIGTERM, stop)
    threading.Thread(target=stop_when_orphaned, daemon=True).start()
    try:
        code = broker.wait()
    finally:  # an error of this process's own: the broker goes with it
        if broker.poll() is None:
            broker.terminate()
            try:
                broker.wait(STOP_S)
            except subprocess.TimeoutExpired:
                broker.kill()
        shutil.rmtree(folder, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
