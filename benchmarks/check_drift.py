"""Drift on the synthetic scene with the default settings, in simulated time: no false alarm
over minutes of the normal scene, then an alert within one window of a shift.

    python benchmarks/check_drift.py [--normal-s 600] [--shift dark] [--shifted-s 300] [--json]

The reference profile is written from 300 frames of the camera's own scene (as `edge calibrate`
writes one from the calibration frames); the monitor then sees frames that follow them, at
15 FPS of capture time, with `[drift]` at its defaults (300 s window, PSI 0.25, alerts on
input and scores). Reported: every state change with its time, and whether the check passed.
Takes about a minute per 5 simulated minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from calibration.drift_reference import drift_reference_from_images
from edge.config import DriftConfig
from edge.demo import bundled_model
from edge.drift import DriftMonitor
from edge.postprocess import decoder_from_spec
from edge.preprocess import letterboxer_from_spec
from edge.runners.onnxruntime import OrtRunner
from edge.synthetic.scene import ShapeScene
from edge.synthetic.shift import SHIFTS, SceneShift

FPS = 15.0
REFERENCE_FRAMES = 300
REFERENCE_STEP = 15


def reference_frames(scene: ShapeScene) -> Iterator[npt.NDArray[np.uint8]]:
    for index in range(REFERENCE_FRAMES * REFERENCE_STEP):
        image, _ = scene.next()
        if index % REFERENCE_STEP == 0:
            yield image.copy()


def check(normal_s: float, shift_kind: str, shifted_s: float) -> dict[str, Any]:
    model = bundled_model()
    scene = ShapeScene(seed=1)
    reference = drift_reference_from_images(model, reference_frames(scene), "scene", threads=1)
    settings = DriftConfig()
    published: list[dict[str, Any]] = []
    monitor = DriftMonitor("gate", settings, reference, published.append)
    normal_frames = int(normal_s * FPS)
    shift = SceneShift(shift_kind, after=scene.frame_index + normal_frames)
    with OrtRunner.from_path(model, threads=1, slots=1) as runner:
        letterbox, decode = letterboxer_from_spec(runner.spec), decoder_from_spec(runner.spec)
        for index in range(normal_frames + int(shifted_s * FPS)):
            image, _ = scene.next()
            shift.apply(image, scene.frame_index)
            ts = index / FPS
            monitor.observe_image(ts, image)
            detections = decode(runner.infer(0)[0], letterbox(image, runner.input_buffer(0)))
            monitor.observe_detections(ts, detections, image.shape[1], image.shape[0])
    changes = [(round(p["ts"], 1), p["state"]) for i, p in enumerate(published)
               if i == 0 or p["state"] != published[i - 1]["state"]]
    false_alarms = [t for t, s in changes if s == "alert" and t <= normal_s]
    alerts = [t for t, s in changes if s == "alert" and t > normal_s]
    detected_after = alerts[0] - normal_s if alerts else None
    return {"window_s": settings.window_s, "normal_s": normal_s, "shift": shift_kind,
            "shifted_s": shifted_s, "changes": changes, "false_alarms": false_alarms,
            "alert_after_shift_s": detected_after,
            "passed": not false_alarms and detected_after is not None
            and detected_after <= settings.window_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--normal-s", type=float, default=600.0)
    parser.add_argument("--shift", choices=SHIFTS, default="dark")
    parser.add_argument("--shifted-s", type=float, default=300.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = check(args.normal_s, args.shift, args.shifted_s)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:20} {value}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
