"""Our INT8 calibration vs ONNX Runtime's, on the demo detector and the same frames.

    python benchmarks/bench_calibration.py [--frames 32 128 256] [--eval-scenes 20] [--json]

Each calibration runs in its own process, so peak RSS (ru_maxrss) is that side's alone:
- ours: streaming statistics + TensorRT entropy, `tensorrt` profile (symmetric int8 QDQ);
- theirs: `onnxruntime.quantization.quantize_static` with `CalibrationMethod.Entropy` and
  TensorRT-style settings (QDQ, int8 activations and weights, symmetric, per-channel).
Ours is also run with the `mse` method (the default) for both profiles. Then every model is
scored through the daemon's path on held-out synthetic scenes (mAP@0.5), and the `cpu`
profile's latency is compared with FP32 on ONNX Runtime (one thread, median).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
from latency import interleaved_latencies_ms

if TYPE_CHECKING:
    from converters.quantize import Profile

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "edge" / "models" / "shapes.onnx"


def write_frames(folder: Path, count: int, seed: int = 7) -> None:
    from edge.synthetic import ShapeScene

    scene = ShapeScene(seed=seed)
    for index in range(count):
        for _ in range(5):
            image, _ = scene.next()
        cv2.imwrite(str(folder / f"{index:04d}.png"), image)


def run_side(side: str, frames: Path, out: Path, profile: Profile,
              method: str) -> dict[str, Any]:
    """Runs in the child process: calibrate, write `out`, report time."""
    from calibration.readers import frames_from
    from converters.quantize import CalibrateOptions, calibrate, load_float_model

    model, spec = load_float_model(MODEL)
    frame_set = frames_from(frames, max_images=10_000)
    started = time.perf_counter()
    if side == "ours":
        result = calibrate(model, spec, frame_set,
                           CalibrateOptions(profile=profile, method=method, progress=False))
        out.write_bytes(result.model.SerializeToString())
    else:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        class Reader(CalibrationDataReader):  # type: ignore[misc]
            def __init__(self) -> None:
                self._inputs = frame_set.inputs(spec)

            def get_next(self) -> dict[str, Any] | None:
                return next(self._inputs, None)

        quantize_static(str(MODEL), str(out), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.Entropy,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    return {"seconds": time.perf_counter() - started}


def child(side: str, frames: Path, out: Path, profile: str = "tensorrt",
          method: str = "entropy") -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", side, "--frames-dir", str(frames), "--out",
         str(out), "--profile", profile, "--method", method], capture_output=True, text=True,
        check=True, cwd=ROOT)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def calibration_costs(work: Path, count: int) -> dict[str, Any]:
    """Our entropy calibration against ONNX Runtime's on the same `count` frames."""
    frames = work / f"frames-{count}"
    frames.mkdir()
    write_frames(frames, count)
    ours = child("ours", frames, work / f"ours-{count}.onnx")
    theirs = child("ort", frames, work / f"ort-{count}.onnx")
    return {
        "frames": count,
        "ours_seconds": round(ours["seconds"], 2), "ort_seconds": round(theirs["seconds"], 2),
        "time_ratio": round(ours["seconds"] / theirs["seconds"], 3),
        "ours_peak_rss_mb": round(ours["peak_rss_mb"], 1),
        "ort_peak_rss_mb": round(theirs["peak_rss_mb"], 1),
        "rss_ratio": round(ours["peak_rss_mb"] / theirs["peak_rss_mb"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[32, 128, 256],
                        help="calibration frame counts to compare; accuracy and latency use "
                             "the last one")
    parser.add_argument("--eval-scenes", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=["ours", "ort"])
    parser.add_argument("--frames-dir", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--profile", choices=["tensorrt", "cpu"], default="tensorrt")
    parser.add_argument("--method", default="entropy")
    args = parser.parse_args()
    if args.child:
        measured = run_side(args.child, args.frames_dir, args.out, args.profile, args.method)
        measured["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(measured))
        return

    from converters.demo_detector.evaluate import evaluate_onnx

    with tempfile.TemporaryDirectory(prefix="edge-bench-") as scratch:
        work = Path(scratch)
        costs = [calibration_costs(work, count) for count in args.frames]
        last = args.frames[-1]
        frames = work / f"frames-{last}"
        trt_mse = child("ours", frames, work / "trt_mse.onnx", "tensorrt", "mse")
        cpu = child("ours", frames, work / "cpu.onnx", "cpu", "mse")
        scores = {name: evaluate_onnx(path, scenes=args.eval_scenes).map50 for name, path in (
            ("fp32", MODEL), ("ours_entropy_tensorrt", work / f"ours-{last}.onnx"),
            ("ort_entropy", work / f"ort-{last}.onnx"),
            ("ours_mse_tensorrt", work / "trt_mse.onnx"), ("ours_mse_cpu", work / "cpu.onnx"))}
        latency = interleaved_latencies_ms({"fp32": str(MODEL), "ours_cpu": str(work / "cpu.onnx")})
    result = {
        "calibration": costs,
        "accuracy_frames": last,
        "ours_mse_tensorrt_seconds": round(trt_mse["seconds"], 2),
        "ours_mse_cpu_seconds": round(cpu["seconds"], 2),
        "map50": {k: round(v, 4) for k, v in scores.items()},
        "entropy_ours_minus_ort_points": round(
            100 * (scores["ours_entropy_tensorrt"] - scores["ort_entropy"]), 2),
        "tensorrt_profile_drop_points": {
            "entropy": round(100 * (scores["fp32"] - scores["ours_entropy_tensorrt"]), 2),
            "mse": round(100 * (scores["fp32"] - scores["ours_mse_tensorrt"]), 2)},
        "cpu_profile_drop_points": round(100 * (scores["fp32"] - scores["ours_mse_cpu"]), 2),
        "latency_ms": {k: round(v, 3) for k, v in latency.items()},
        "cpu_latency_ratio": round(latency["ours_cpu"] / latency["fp32"], 3),
    }
    if not args.json:
        print(f"{'frames':>7s} {'ours s':>8s} {'ORT s':>8s} {'time':>7s} "
              f"{'ours MB':>8s} {'ORT MB':>8s} {'RSS':>7s}")
        for row in costs:
            print(f"{row['frames']:7d} {row['ours_seconds']:8.2f} {row['ort_seconds']:8.2f} "
                  f"{row['time_ratio']:6.3f}x {row['ours_peak_rss_mb']:8.1f} "
                  f"{row['ort_peak_rss_mb']:8.1f} {row['rss_ratio']:6.3f}x")
        for key, value in result.items():
            if key != "calibration":
                print(f"{key:32s} {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
