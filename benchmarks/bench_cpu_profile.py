"""The `cpu` profile's latency against FP32 on ONNX Runtime, with the stem float and as int8.

    python benchmarks/bench_cpu_profile.py [--rounds 6] [--json]

Two models:
- the demo detector as shipped (ReLU, trained): also scored (mAP@0.5, held-out scenes);
- the same architecture with SiLU, Ultralytics' activation, untrained (BatchNorm statistics
  randomised so activations are not trivial): latency only, and the output SQNR against FP32.
Each is calibrated (`cpu` profile, mse, 64 synthetic frames) twice: as `edge calibrate` does
(int8 stem on the pixels, `converters/pixel_stem.py`) and with the stem conv kept float
(`--exclude`). All three models of a kind take turns in blocks of 100 runs on one thread, so
drift in the machine's speed reaches them equally; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from calibration.latency import interleaved_latencies_ms

if TYPE_CHECKING:
    from edge.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "edge" / "models" / "shapes.onnx"
FRAMES = "synthetic://shapes?seed=3"


def silu_detector() -> onnx.ModelProto:
    import torch
    from torch import nn

    from converters.convert import ConvertOptions, convert_module
    from converters.demo_detector.model import ShapesDetector
    from edge.synthetic.scene import SHAPE_LABELS

    torch.manual_seed(0)
    network = ShapesDetector(activation=nn.SiLU).eval()
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.BatchNorm2d):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    options = ConvertOptions(input_size=(320, 320), labels=SHAPE_LABELS, verify=False)
    return convert_module(network, options, "shapes-silu").model


def spec_of(model: onnx.ModelProto) -> ModelSpec:
    from edge.spec import SPEC_KEY, ModelSpec

    return ModelSpec.from_json(next(p.value for p in model.metadata_props if p.key == SPEC_KEY),
                               "benchmark model")


def int8_variants(model: onnx.ModelProto) -> dict[str, onnx.ModelProto]:
    from calibration.readers import frames_from
    from converters.quantize import CalibrateOptions, calibrate

    spec = spec_of(model)
    stem = next(n.name for n in model.graph.node if n.op_type == "Conv")
    frames = frames_from(FRAMES, max_images=64)
    return {name: calibrate(model, spec, frames, CalibrateOptions(
        profile="cpu", exclude=exclude, progress=False)).model
        for name, exclude in (("int8_pixel_stem", ()), ("int8_float_stem", (stem,)))}


def output_sqnr_db(reference: onnx.ModelProto, quantized: onnx.ModelProto) -> float:
    from calibration.fidelity import output_sqnr
    from calibration.readers import frames_from

    feeds = frames_from("synthetic://shapes?seed=9", max_images=8).inputs(spec_of(reference))
    return round(min(output_sqnr(reference, quantized, feeds).values()), 2)


def measure(name: str, fp32: onnx.ModelProto, rounds: int, score: bool) -> dict[str, Any]:
    models = {"fp32": fp32, **int8_variants(fp32)}
    latency = interleaved_latencies_ms({k: m.SerializeToString() for k, m in models.items()},
                                       rounds)
    result: dict[str, Any] = {
        "model": name,
        "latency_ms": {k: round(v, 3) for k, v in latency.items()},
        "ratio_pixel_stem": round(latency["int8_pixel_stem"] / latency["fp32"], 3),
        "ratio_float_stem": round(latency["int8_float_stem"] / latency["fp32"], 3),
        "output_sqnr_db": {k: output_sqnr_db(fp32, models[k])
                           for k in ("int8_pixel_stem", "int8_float_stem")},
    }
    if score:
        from converters.demo_detector.evaluate import evaluate_onnx

        with tempfile.TemporaryDirectory(prefix="edge-bench-") as scratch:
            maps = {}
            for key, model in models.items():
                path = Path(scratch) / f"{key}.onnx"
                onnx.save(model, path)
                maps[key] = evaluate_onnx(path).map50
        result["map50"] = maps
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [measure("demo detector (ReLU, trained)", onnx.load(str(MODEL)), args.rounds, True),
               measure("demo architecture with SiLU (untrained)", silu_detector(), args.rounds,
                       False)]
    if not args.json:
        for row in results:
            print(f"{row['model']}: FP32 {row['latency_ms']['fp32']} ms; int8 with the stem on "
                  f"pixels {row['ratio_pixel_stem']}x, with a float stem "
                  f"{row['ratio_float_stem']}x; output SQNR {row['output_sqnr_db']}"
                  + (f"; mAP@0.5 {row['map50']}" if "map50" in row else ""))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
