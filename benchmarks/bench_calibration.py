"""Our INT8 calibration vs ONNX Runtime's, side by side, as a user runs them.

    python benchmarks/bench_calibration.py [--frames 128] [--demo-frames 256] [--repeats 3]
        [--ort-entropy-frames 128] [--setups demo corpus] [--cores 1 2] [--json]

Every side is one whole process, timed from start to exit (imports included, as a user waits
for them) with its own peak RSS (`os.wait4`):
- ours: `edge calibrate MODEL --images DIR -o OUT` with the defaults (`--method auto`:
  every range method judged on held-out frames; `tensorrt` profile), with the medians of the
  phases it reports (statistics, ranges_and_judging);
- ONNX Runtime: `quantize_static` with MinMax or Entropy calibration and TensorRT-style
  settings (QDQ, int8 activations and weights, symmetric, per-channel), fed the same frames
  through the same letterbox by a reader that decodes each JPEG in full, as a user's would.

Two setups:
1. a corpus model: `nudenet-320n` (Ultralytics YOLOv8n, 3.0 M parameters, 320x320) from the
   `nudenet` wheel (converters.corpus), on `--frames` camera-sized JPEGs (1280x720 and
   1920x1080 crops of the corpus photos): ours against MinMax's time and Entropy's memory;
2. the bundled demo detector on `--demo-frames` camera-sized JPEGs of the synthetic scene
   (480x360 to 1920x1080): ours against Entropy's time.
`--cores 1 2` also times ours and MinMax on the corpus model with both pinned to the first 1,
then 2, of this process's CPUs (how the ratio depends on the machine: MinMax gains little from
a second core, ours about 2x).
The sides take turns for `--repeats` rounds; medians are reported. ONNX Runtime's Entropy keeps
every activation of every frame in memory (about 60 MB a frame for the YOLOv8n), so
`--ort-entropy-frames` can cap its frame count on a small machine (the RSS is then a lower
bound of what it needs for all frames).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "edge" / "models" / "shapes.onnx"
CORPUS_MODEL = "nudenet-320n"
CAMERA_SIZES = ((480, 360), (640, 480), (1280, 720), (1920, 1080))


def timed_process(command: list[str]) -> dict[str, float]:
    """Wall seconds and peak RSS (MB) of one child process, and the seconds of each phase that
    `edge calibrate --json` reports (`phase_<name>`); a failure is raised with its output."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    stdout, stderr = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n"
                           f"{stdout[-2000:]}\n{stderr[-2000:]}")
    measured = {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024}
    last_line = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    if last_line.startswith("{"):
        phases = json.loads(last_line).get("phase_seconds", {})
        measured.update({f"phase_{name}": float(value) for name, value in phases.items()})
    return measured


def ours(model: Path, frames: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "edge", "calibrate", str(model), "--images", str(frames),
            "-o", str(out), "--max-images", "100000", "--json"]


def ort(method: str, model: Path, frames: Path, out: Path, limit: int) -> list[str]:
    return [sys.executable, __file__, "--child", method, "--model", str(model), "--frames-dir",
            str(frames), "--out", str(out), "--limit", str(limit)]


def ort_child(method: str, model: Path, frames: Path, out: Path, limit: int) -> None:
    """ONNX Runtime's static quantization as a user writes it: a reader that decodes each image
    in full and letterboxes it for the model."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from edge.preprocess import letterboxer_from_spec
    from edge.spec import spec_from_onnx_file

    spec = spec_from_onnx_file(model)
    letterbox = letterboxer_from_spec(spec)
    paths = sorted(frames.glob("*.jpg"))[:limit]

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._paths = iter(paths)

        def get_next(self) -> dict[str, Any] | None:
            path = next(self._paths, None)
            if path is None:
                return None
            buffer = np.empty((1, spec.input.height, spec.input.width, 3), np.uint8)
            letterbox(np.asarray(cv2.imread(str(path)), np.uint8), buffer)
            return {spec.input.name: buffer}

    quantize_static(str(model), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=getattr(CalibrationMethod, method),
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})


def camera_jpegs_from_photos(photos: list[Path], folder: Path, count: int) -> None:
    """`count` JPEGs at 1280x720 and 1920x1080: random crops of real photos (upscaled as need
    be), JPEG quality 90."""
    rng = np.random.default_rng(0)
    for index in range(count):
        width, height = CAMERA_SIZES[2 + index % 2]
        photo = np.asarray(cv2.imread(str(photos[index % len(photos)])), np.uint8)
        crop_h = int(photo.shape[0] * rng.uniform(0.6, 1.0))
        crop_w = min(photo.shape[1], int(crop_h * width / height))
        top = int(rng.integers(0, photo.shape[0] - crop_h + 1))
        left = int(rng.integers(0, photo.shape[1] - crop_w + 1))
        frame = cv2.resize(photo[top:top + crop_h, left:left + crop_w], (width, height))
        cv2.imwrite(str(folder / f"{index:04d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])


def camera_jpegs_from_scene(folder: Path, count: int) -> None:
    from edge.synthetic import ShapeScene
    from edge.synthetic.scene import SceneConfig

    scenes = [ShapeScene(seed=1000 + i, config=SceneConfig(width=width, height=height))
              for i, (width, height) in enumerate(CAMERA_SIZES)]
    for index in range(count):
        scene = scenes[index % len(scenes)]
        for _ in range(5):
            image, _ = scene.next()
        cv2.imwrite(str(folder / f"{index:04d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])


def corpus_model(work: Path) -> tuple[Path, list[Path]]:
    """The converted corpus model and the corpus photos (downloaded once with pip)."""
    from converters.corpus.catalogue import models_named
    from converters.corpus.fetch import default_cache, fetch_corpus

    cache = default_cache()
    (entry,) = models_named([CORPUS_MODEL])
    files = fetch_corpus(cache, (entry,))
    converted = work / f"{CORPUS_MODEL}.onnx"
    subprocess.run([sys.executable, "-m", "edge", "convert", str(files.models[CORPUS_MODEL]),
                    "-o", str(converted), *entry.convert_args], check=True, cwd=ROOT,
                   capture_output=True)
    calibration_photos, evaluation_photos = files.images["photos"]
    photos = sorted(p for folder in (calibration_photos, evaluation_photos)
                    for p in folder.iterdir() if p.suffix in (".png", ".jpg"))
    return converted, photos


def side_by_side(sides: dict[str, list[str]], repeats: int,
                 cpus: set[int] | None = None) -> dict[str, dict[str, float]]:
    """Median seconds and peak RSS of each side over `repeats` rounds taken in turn, each side
    on `cpus` only if given."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    everywhere = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus or everywhere)  # children inherit it, as under taskset
    try:
        for _ in range(repeats):
            for name, command in sides.items():
                samples[name].append(timed_process(command))
    finally:
        os.sched_setaffinity(0, everywhere)
    return {name: {key: round(statistics.median(s[key] for s in runs), 2) for key in runs[0]}
            for name, runs in samples.items()}


def corpus_setup(work: Path, frames: int, entropy_frames: int, repeats: int,
                 cores: list[int]) -> dict[str, Any]:
    model, photos = corpus_model(work)
    folder = work / "corpus-frames"
    folder.mkdir()
    camera_jpegs_from_photos(photos, folder, frames)
    timed = {"ours": ours(model, folder, work / "ours.onnx"),
             "ort_minmax": ort("MinMax", model, folder, work / "minmax.onnx", frames)}
    measured = side_by_side({
        **timed,
        "ort_entropy": ort("Entropy", model, folder, work / "entropy.onnx", entropy_frames),
    }, repeats)
    return {"model": CORPUS_MODEL, "frames": frames, "ort_entropy_frames": entropy_frames,
            "runs": repeats, **measured,
            "time_vs_minmax": round(measured["ours"]["seconds"] /
                                    measured["ort_minmax"]["seconds"], 3),
            "rss_vs_entropy": round(measured["ours"]["peak_rss_mb"] /
                                    measured["ort_entropy"]["peak_rss_mb"], 3),
            "by_cores": {str(count): pinned(timed, repeats, count) for count in cores}}


def pinned(sides: dict[str, list[str]], repeats: int, count: int) -> dict[str, float]:
    """Median seconds of ours and MinMax with both on the first `count` of this process's CPUs,
    and their ratio."""
    available = sorted(os.sched_getaffinity(0))
    if count > len(available):
        raise SystemExit(f"--cores {count}: this process may use {len(available)} CPU(s)")
    measured = side_by_side(sides, repeats, set(available[:count]))
    seconds = {name: side["seconds"] for name, side in measured.items()}
    return {**seconds, "time_vs_minmax": round(seconds["ours"] / seconds["ort_minmax"], 3)}


def demo_setup(work: Path, frames: int, repeats: int) -> dict[str, Any]:
    folder = work / "demo-frames"
    folder.mkdir()
    camera_jpegs_from_scene(folder, frames)
    measured = side_by_side({
        "ours": ours(DEMO_MODEL, folder, work / "demo-ours.onnx"),
        "ort_entropy": ort("Entropy", DEMO_MODEL, folder, work / "demo-entropy.onnx", frames),
    }, repeats)
    return {"model": "shapes (demo detector)", "frames": frames, "runs": repeats, **measured,
            "time_vs_entropy": round(measured["ours"]["seconds"] /
                                     measured["ort_entropy"]["seconds"], 3),
            "rss_vs_entropy": round(measured["ours"]["peak_rss_mb"] /
                                    measured["ort_entropy"]["peak_rss_mb"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=128, help="corpus-model frames")
    parser.add_argument("--ort-entropy-frames", type=int, default=128,
                        help="cap ONNX Runtime Entropy's frames on the corpus model (memory)")
    parser.add_argument("--demo-frames", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--setups", nargs="+", choices=["demo", "corpus"],
                        default=["demo", "corpus"])
    parser.add_argument("--cores", type=int, nargs="*", default=[],
                        help="also time ours and MinMax pinned to this many CPUs (corpus)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=["MinMax", "Entropy"])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--frames-dir", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--limit", type=int, default=100_000)
    args = parser.parse_args()
    if args.child:
        ort_child(args.child, args.model, args.frames_dir, args.out, args.limit)
        return
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as scratch:
        work = Path(scratch)
        result: dict[str, Any] = {}
        if "demo" in args.setups:
            result["demo"] = demo_setup(work, args.demo_frames, args.repeats)
        if "corpus" in args.setups:
            result["corpus"] = corpus_setup(work, args.frames, args.ort_entropy_frames,
                                            args.repeats, args.cores)
    if not args.json:
        for name, setup in result.items():
            print(f"{name}: {setup['model']}, {setup['frames']} frames, median of "
                  f"{setup['runs']}")
            for side in ("ours", "ort_minmax", "ort_entropy"):
                if side in setup:
                    phases = ", ".join(f"{key[6:]} {value:.2f}" for key, value
                                       in setup[side].items() if key.startswith("phase_"))
                    print(f"  {side:12s} {setup[side]['seconds']:7.2f} s "
                          f"{setup[side]['peak_rss_mb']:8.1f} MB"
                          f"{f'  ({phases})' if phases else ''}")
            print("  " + ", ".join(f"{k} {v}" for k, v in setup.items() if "_vs_" in k))
            for count, side in setup.get("by_cores", {}).items():
                print(f"  on {count} CPU(s): ours {side['ours']:.2f} s, MinMax "
                      f"{side['ort_minmax']:.2f} s, time_vs_minmax {side['time_vs_minmax']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
