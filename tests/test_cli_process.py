"""What importing the `edge` command line sets for its process: no spinning BLAS threads."""

from __future__ import annotations

import os
import subprocess
import sys

THREADS_AFTER_IMPORTS = (
    "import os, {first}numpy, cv2, onnxruntime; "
    "print(os.environ.get('OPENBLAS_NUM_THREADS'), len(os.listdir('/proc/self/task')))")


def _run(code: str, **env: str) -> tuple[str, int]:
    environment = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
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
