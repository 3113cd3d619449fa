"""`edge calibrate` end to end on the demo detector (small frame counts keep it quick)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from calibration.readers import frames_from
from calibration.selection import kept_float_helped
from converters.convert import ConvertOptions, convert_module
from converters.demo_detector.evaluate import evaluate_onnx
from converters.errors import ConversionError
from converters.fold import Normalisation
from converters.model_report import quantization_summary
from converters.qdq_rules import check_tensorrt_qdq, tensorrt_qdq_violations
from converters.quantize import CalibrateOptions, calibrate, load_float_model
from converters.weights import U8S8_WEIGHT_LIMIT
from edge.errors import InputError, ModelError
from tests.converters.tiny_models import TinyDetector, seeded
from tests.terminal import edge_at_a_terminal

FRAMES = "synthetic://shapes?seed=11"


@pytest.fixture(scope="module")
def demo(demo_model):
    return load_float_model(demo_model)


@pytest.fixture(scope="module")
def tensorrt_int8(demo):
    model, spec = demo
    return calibrate(model, spec, frames_from(FRAMES, max_images=8),
                     CalibrateOptions(profile="tensorrt", progress=False))


def test_tensorrt_profile_follows_the_rules_and_keeps_accuracy(tensorrt_int8, tmp_path):
    model = tensorrt_int8.model
    assert tensorrt_int8.cpu_latency is None  # not a CPU model: not timed here
    assert tensorrt_qdq_violations(model) == []
    summary = quantization_summary(model)
    assert summary["activation_types"] == ["int8"] and summary["symmetric"]
    assert summary["per_channel_weights"] == summary["quantized_weights"] == 20
    initializers = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type == "Conv":
            weight_dq = producers[node.input[1]]
            assert weight_dq.op_type == "DequantizeLinear"
            assert next(a.i for a in weight_dq.attribute if a.name == "axis") == 0
        if node.op_type == "Add" and not set(node.input) & set(initializers):
            quantized = [producers[i].op_type == "DequantizeLinear" for i in node.input
                         if i in producers]
            if any(producers[i].op_type == "Relu" for i in node.input if i in producers):
                # residual block: x + body(x); only the skip (Relu) side is quantized
                assert sum(quantized) == 1
    path = tmp_path / "int8.onnx"
    onnx.save(model, path)
    assert evaluate_onnx(path, scenes=3, frames_per_scene=10).map50 > 0.95


def test_cpu_profile_is_uint8_and_breaks_the_tensorrt_rules(demo, tmp_path):
    model, spec = demo
    result = calibrate(model, spec, frames_from(FRAMES, max_images=8),
                       CalibrateOptions(profile="cpu", progress=False))
    summary = quantization_summary(result.model)
    assert summary["activation_types"] == ["uint8"]
    assert summary["quantized_weights"] == summary["quantized_biases"] == 20  # all 20 convs
    image = result.model.graph.input[0].name
    first = [n.op_type for n in result.model.graph.node if image in n.input]
    assert first == ["Reshape"]  # the int8 stem reads the camera pixels (converters.pixel_stem)
    assert "Cast" not in {n.op_type for n in result.model.graph.node}
    # the conv on raw pixels keeps its int8 weights within +-64 (exact on x86 without VNNI
    # too); the others use the whole int8 range
    weights = {i.name: np.abs(numpy_helper.to_array(i).astype(np.int16)).max()
               for i in result.model.graph.initializer
               if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4}
    assert len(weights) == 20  # one per conv, the two of the stem on pixels included
    assert weights.pop(next(name for name in weights if name.endswith("_quad_w"))) == \
        U8S8_WEIGHT_LIMIT
    assert max(weights.values()) == 127
    with pytest.raises(ConversionError, match="zero point must be int8 0"):
        check_tensorrt_qdq(result.model)
    # timed against FP32 on this CPU, the profile being for speed
    assert result.cpu_latency is not None and result.cpu_latency.fp32_ms > 0
    assert "latency" in result.phases
    path = tmp_path / "cpu.onnx"
    onnx.save(result.model, path)
    assert evaluate_onnx(path, scenes=3, frames_per_scene=10).map50 > 0.95


@pytest.mark.parametrize("normalisation, batch, stem_on_pixels", [
    (Normalisation(), 1, True),
    (Normalisation(), None, True),  # dynamic batch
    (Normalisation(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)), 1, False),
])
def test_cpu_profile_stem_on_converted_models(normalisation, batch, stem_on_pixels, caplog):
    converted = convert_module(seeded(TinyDetector()), ConvertOptions(
        input_size=(64, 96), labels=("a", "b"), normalisation=normalisation, batch=batch,
        stride=4), "tiny")
    frames = frames_from(FRAMES, max_images=4)
    with caplog.at_level(logging.INFO, logger="converters.qdq_cpu"):
        quantized = calibrate(converted.model, converted.spec, frames,
                              CalibrateOptions(profile="cpu", progress=False)).model
    first = next(n.op_type for n in quantized.graph.node if "images" in n.input)
    assert first == ("Reshape" if stem_on_pixels else "Transpose")
    # ImageNet's mean is no whole pixel value: the zero padding could not stay exact
    assert ("whole pixel value" in caplog.text) != stem_on_pixels
    frame = np.random.default_rng(0).integers(0, 256, (2 if batch is None else 1, 64, 96, 3),
                                              np.uint8)
    session = ort.InferenceSession(quantized.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    assert session.run(None, {"images": frame})[0].shape[0] == frame.shape[0]


def test_each_calibration_in_one_process_says_why_its_stem_stays_float(caplog):
    """The reason was logged once per process: a second calibration (the Python API, a
    notebook, or a test that ran before) said nothing of its float stem."""
    imagenet = Normalisation(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    converted = convert_module(seeded(TinyDetector()), ConvertOptions(
        input_size=(64, 96), labels=("a", "b"), normalisation=imagenet, batch=1, stride=4),
        "tiny")
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="converters.qdq_cpu"):
            calibrate(converted.model, converted.spec, frames_from(FRAMES, max_images=4),
                      CalibrateOptions(profile="cpu", progress=False))
        assert caplog.text.count("the stem stays float") == 1, caplog.text


def test_validator_catches_per_tensor_violations(tensorrt_int8):
    broken = onnx.ModelProto()
    broken.CopyFrom(tensorrt_int8.model)
    weight_dq = next(n for n in broken.graph.node
                     if n.op_type == "DequantizeLinear" and n.input[0].endswith("__int8"))
    for attribute in weight_dq.attribute:
        if attribute.name == "axis":
            attribute.i = 1
    problems = tensorrt_qdq_violations(broken)
    assert any("TensorRT needs axis 0" in p for p in problems)


def test_exclusions(demo):
    model, spec = demo
    first_conv = next(n.name for n in model.graph.node if n.op_type == "Conv")
    frames = frames_from(FRAMES, max_images=4)
    result = calibrate(model, spec, frames, CalibrateOptions(exclude=(first_conv,),
                                                             keep_float=2, progress=False))
    assert result.excluded[0] == first_conv and len(result.excluded) == 3
    float_convs = [n for n in result.model.graph.node if n.name in result.excluded]
    assert all(not n.input[1].endswith("__dequantized") for n in float_convs)



def test_option_checks_come_before_any_image_is_read(demo_model, tmp_path):
    """A percentile out of range or a mistyped --exclude fails at once, not after a folder of
    undecodable images has been scanned and decoded; --threads beyond the cores is capped."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "frame.jpg").write_bytes(b"not a jpeg")
    for bad in (["--percentile", "0"], ["--exclude", "nope"]):
        result = edge("calibrate", demo_model, "--images", images, "-o", tmp_path / "o.onnx",
                      *bad)
        assert result.returncode == 2, result.stderr
        assert "usable image" not in result.stderr and "skipped" not in result.stderr
    result = edge("calibrate", demo_model, "--images", FRAMES, "--max-images", "4",
                  "--min-images", "2", "-o", tmp_path / "o.onnx", "--threads", "999")
    assert result.returncode == 0, result.stderr
    assert "--threads 999 is more than the" in result.stderr


def test_keep_float_model_is_judged_like_the_candidates(demo):
    """The model written after --keep-float differs from the chosen candidate: it is judged on
    the same held-out frames, so the user sees whether keeping layers in float helped."""
    model, spec = demo
    result = calibrate(model, spec, frames_from(FRAMES, max_images=16),
                       CalibrateOptions(keep_float=1, progress=False))
    assert result.written is not None and len(result.excluded) == 1
    assert result.written.method == f"{result.ranges.method}, 1 float"
    assert result.written.frames == 2 and result.written.sqnr_db > 10
    assert result.written not in result.comparison
    chosen = next(f for f in result.comparison if f.method == result.ranges.method)
    helped = kept_float_helped(result.written, chosen)
    assert helped != ("--keep-float 1 did not bring the output measurably closer"
                      in (result.warning or ""))


def test_keep_float_ranks_layers_by_their_effect_on_the_output(demo):
    """--keep-float (tensorrt profile, held-out frames) keeps the layers that, each in float
    alone, bring the output closest to FP32: exactly the best of one model per layer."""
    from calibration.layers import weighted_nodes
    from calibration.ranges import TensorRanges, range_method
    from calibration.selection import HeldOutJudge, best_of
    from calibration.stats import StatsCollector
    from converters.int8_models import float_layers_by_output_gain
    from converters.qdq_tensorrt import qdq_for_tensorrt
    from converters.quantize import tensors_to_observe

    model, spec = demo
    collector = StatsCollector(model, tensors_to_observe(model, CalibrateOptions()))
    stats = collector.collect(frames_from(FRAMES, max_images=12).inputs(spec))
    ranges = TensorRanges.from_stats(stats, range_method("mse"), collector.frames)
    feeds = list(frames_from("synthetic://shapes?seed=13", max_images=3).inputs(spec))
    judge = HeldOutJudge(model, spec, feeds, int8_kernels=False)
    first = next(n.name for n in model.graph.node if n.op_type == "Conv")
    chosen = float_layers_by_output_gain(model, ranges, judge, [first], 2)
    each = [judge.fidelity(n.name, qdq_for_tensorrt(model, ranges, [first, n.name]), 1)
            for n in weighted_nodes(model) if n.name != first]
    best = best_of(each)
    second = best_of([f for f in each if f is not best])
    assert chosen == [best.method, second.method] and first not in chosen


@pytest.mark.parametrize("profile", ["tensorrt", "cpu"])
def test_unknown_exclusions_fail_before_any_work(demo, profile):
    """A mistyped --exclude is refused on both profiles, before a frame is read (the cpu
    profile used to keep the misnamed node's neighbour quantized and report the typo as
    kept float)."""
    model, spec = demo

    def unreadable():
        raise AssertionError("frames were read")
        yield

    frames = frames_from(FRAMES, max_images=4)
    frames.inputs = lambda spec: unreadable()  # type: ignore[method-assign]
    with pytest.raises(ConversionError, match="unknown nodes: nope"):
        calibrate(model, spec, frames, CalibrateOptions(profile=profile, exclude=("nope",),
                                                        progress=False))
    conv = next(n.name for n in model.graph.node if n.op_type == "Conv")
    with pytest.raises(ConversionError, match=f"did you mean {conv}\\?"):
        calibrate(model, spec, frames, CalibrateOptions(profile=profile, exclude=(conv + "x",),
                                                        progress=False))


def test_a_model_exported_below_opset_13_is_refused_with_the_fix(demo_model, tmp_path):
    """`edge convert --opset 12` once wrote such a model (the option now starts at 13), and
    calibrating it was ONNX's checker's traceback on DequantizeLinear's `axis`."""
    model = onnx.load(demo_model)
    next(o for o in model.opset_import if o.domain in ("", "ai.onnx")).version = 12
    onnx.save(model, tmp_path / "old.onnx")
    with pytest.raises(ModelError, match=r"old\.onnx uses ONNX opset 12; INT8's per-channel "
                                         r"weights need opset 13: convert it again"):
        load_float_model(tmp_path / "old.onnx")


def test_already_quantized_and_unconverted_models(tensorrt_int8, tmp_path):
    onnx.save(tensorrt_int8.model, tmp_path / "int8.onnx")
    with pytest.raises(ModelError, match="already quantized"):
        load_float_model(tmp_path / "int8.onnx")
    plain = onnx.ModelProto()
    plain.CopyFrom(tensorrt_int8.model)
    del plain.metadata_props[:]
    onnx.save(plain, tmp_path / "plain.onnx")
    with pytest.raises(ModelError, match=r"no 'edge\.spec' metadata.*edge convert"):
        load_float_model(tmp_path / "plain.onnx")


def edge(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


def test_a_max_images_sample_of_a_larger_folder_is_said(demo_model, tmp_path):
    """A user check: a 650-image folder logged only "calibrating on 500 frames"; the images
    --max-images left out were said nowhere."""
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(frames_from("synthetic://shapes?seed=3", max_images=12)
                                  .images()):
        cv2.imwrite(str(folder / f"{index:02d}.jpg"), frame)
    result = edge("calibrate", demo_model, "--images", folder, "--max-images", "9",
                  "--min-images", "4", "-o", tmp_path / "int8.onnx", "--json")
    assert result.returncode == 0, result.stderr
    assert "calibrating on 9 frames, a --max-images sample of the folder's 12 images" \
        in result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["sampled_from"] == 12 and summary["frames"] == 8  # 1 of 9 held out
    assert summary["held_out"] == 1
    whole = edge("calibrate", demo_model, "--images", folder, "--min-images", "4",
                 "-o", tmp_path / "all.onnx", "--json")
    assert json.loads(whole.stdout.strip().splitlines()[-1])["sampled_from"] is None
    assert "a --max-images sample" not in whole.stderr


def test_a_video_is_calibrated_on_frames_spread_over_it_and_a_cut_one_said_in_json(
        demo_model, tmp_path):
    """A user check: the video's cut-short warning reached the log but not --json's
    `warning`, and --help still said a video gave its first frames."""
    from tests.calibration.test_readers import write_clip

    scene = list(frames_from("synthetic://shapes?seed=4", max_images=40).images())
    clip = write_clip(tmp_path / "clip.avi", scene)
    whole = edge("calibrate", demo_model, "--images", clip, "--max-images", "10", "--min-images",
                 "4", "-o", tmp_path / "whole.onnx", "--json")
    assert whole.returncode == 0, whole.stderr
    assert "calibrating on 10 frames, spread over the video's 40 frames" in whole.stderr
    summary = json.loads(whole.stdout.strip().splitlines()[-1])
    assert summary["video_frames"] == 40 and "cut short" not in (summary["warning"] or "")
    data = clip.read_bytes()
    clip.write_bytes(data[:len(data) // 2])
    cut = edge("calibrate", demo_model, "--images", clip, "--max-images", "10", "--min-images",
               "4", "-o", tmp_path / "cut.onnx", "--json")
    assert cut.returncode == 0, cut.stderr
    summary = json.loads(cut.stdout.strip().splitlines()[-1])
    assert f"{clip} ended after " in summary["warning"] and "cut short" in summary["warning"]
    assert 4 < summary["video_frames"] < 36
    assert "overread" not in cut.stderr  # FFmpeg's own line; the command says it
    assert "spread evenly over a longer video" in edge("calibrate", "--help").stdout


@pytest.mark.parametrize("content, message", [
    (b"", "is empty (0 bytes): the recording or copy did not finish"),
    (b"not a video at all", "OpenCV could read no frame of it: not a video, or it may be cut "
                            "short"),
])
def test_an_unreadable_video_is_refused_saying_why(demo_model, tmp_path, content, message):
    video = tmp_path / "clip.mp4"
    video.write_bytes(content)
    result = edge("calibrate", demo_model, "--images", video, "-o", tmp_path / "int8.onnx")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "[mov," not in result.stderr  # FFmpeg's own "moov atom not found", twice before
    assert not (tmp_path / "int8.onnx").exists()


def test_a_cache_leaves_out_the_scales_of_what_layers_kept_float_read_and_write(demo_model,
                                                                             tmp_path):
    """A user check: the cache held the scales of the layers --keep-float and --exclude kept
    float, so TensorRT's implicit int8 would have quantized them all the same; a node named
    twice was listed twice."""
    kept = "/stage3/stage3.0/stage3.0.0/Conv"
    around = {"/stem/stem.1/stem.1.2/Relu_output_0", "/stage3/stage3.0/stage3.0.0/Conv_output_0"}

    def cached(*options: str) -> tuple[set[str], dict, str]:
        result = edge("calibrate", demo_model, "--images", FRAMES, "--max-images", "16", "-o",
                      tmp_path / "int8.onnx", "--cache", tmp_path / "model.cache", "--method",
                      "minmax", *options)
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout.strip().splitlines()[-1]) if "--json" in options \
            else {}
        lines = (tmp_path / "model.cache").read_text().splitlines()[1:]
        for written in ("int8.onnx", "model.cache"):
            (tmp_path / written).unlink()
        return {line.split(":")[0] for line in lines}, summary, result.stdout

    everything, _, _ = cached()
    assert around <= everything
    without, summary, _ = cached("--exclude", kept, kept, "--json")
    assert summary["kept_float"] == [kept]
    assert without == everything - around
    assert summary["cache_tensors"] == len(without)
    _, _, said = cached("--exclude", kept)
    assert ("and none for what the 1 layer kept float read and write, so TensorRT keeps them "
            "float too") in said


def test_the_percentile_asked_for_is_recorded_with_the_ranges(demo_model, tmp_path):
    """A user check: `--percentile 99.9` and the default 99.99 wrote the same "percentile" in
    --json, the summary line and the ranges file."""
    result = edge("calibrate", demo_model, "--images", FRAMES, "--max-images", "12", "-o",
                  tmp_path / "int8.onnx", "--ranges", tmp_path / "ranges.json", "--method",
                  "percentile", "--percentile", "99.9", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["method"] == "percentile" and summary["percentile"] == 99.9
    ranges = json.loads((tmp_path / "ranges.json").read_text())
    assert ranges["method"] == "percentile" and ranges["percentile"] == 99.9
    (tmp_path / "int8.onnx").unlink()
    result = edge("calibrate", demo_model, "--images", FRAMES, "--max-images", "12", "-o",
                  tmp_path / "int8.onnx", "--method", "percentile")
    assert "(tensorrt profile, percentile at 99.99%) from" in result.stdout, result.stdout


def test_a_report_without_matplotlib_is_refused_before_the_calibration(demo_model, tmp_path):
    """A user check: on a device install with onnx, `edge calibrate --report` ran the whole
    calibration, then exited 2 for matplotlib."""
    code = ("import sys; sys.modules['matplotlib'] = None\nfrom edge.cli import main\n"
            "sys.exit(main(sys.argv[1:]))")
    refused = subprocess.run([sys.executable, "-c", code, "calibrate", str(demo_model),
                              "--images", FRAMES, "-o", str(tmp_path / "int8.onnx"), "--report",
                              str(tmp_path / "report")],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert ("for the calibration report alone, install it with: "
            f"{sys.executable} -m pip install 'matplotlib>=3.7'") in refused.stderr
    assert "calibrating on" not in refused.stderr  # before any frame is read
    assert not (tmp_path / "int8.onnx").exists() and not (tmp_path / "report").exists()


def test_cli_writes_model_cache_ranges_and_report(demo_model, tmp_path):
    result = edge("calibrate", demo_model, "--images", FRAMES, "--max-images", "8",
                  "--min-images", "4", "-o", tmp_path / "int8.onnx", "--cache",
                  tmp_path / "model.cache", "--ranges", tmp_path / "ranges.json", "--report",
                  tmp_path / "report", "--method", "entropy", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 7 and summary["method"] == "entropy"  # 1 of 8 held out
    assert summary["outputs_seconds"] > 0  # the report's time, apart from the calibration's
    scored = summary["report_accuracy"]
    assert scored["evaluated_on"] == "synthetic://shapes?seed=10011"
    assert scored["fp32"]["images"] == scored["int8"]["images"] == 100
    assert scored["fp32"]["map50"] > 0.9 and 0 < scored["int8"]["map50"] <= 1
    assert "writing the report: FP32 and INT8 scored on" in result.stderr  # not seconds of quiet
    cache = (tmp_path / "model.cache").read_text().splitlines()
    assert cache[0] == "TRT-100300-EntropyCalibration2" and cache[1] == "images: 3f800000"
    assert len(cache) > 40  # every float activation, as TensorRT's implicit path needs
    # but the decode tail, which the QDQ models keep float: no scale, so no int8 in TensorRT
    from converters.qdq_tensorrt import decode_tail_tensors

    tail = decode_tail_tensors(onnx.load(demo_model))
    cached = {line.split(":")[0] for line in cache[1:]}
    assert tail and not tail & cached
    assert summary["cache_tensors"] == len(cache) - 1  # as `edge inspect` counts it
    # every float tensor calibrated for the cache, fewer quantized in the model: both said
    model = onnx.load(tmp_path / "int8.onnx")
    quantized = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    assert summary["quantized_tensors"] == len(quantized) < summary["tensors"]
    assert (f"{summary['tensors']} calibrated tensors, {len(quantized)} quantized in the "
            "model") in (tmp_path / "report" / "index.md").read_text()
    assert "ranges" in json.loads((tmp_path / "ranges.json").read_text())
    index = (tmp_path / "report" / "index.md").read_text()
    assert "| map50 |" in index and "INT8 layers with the lowest SQNR" in index
    # an accuracy loss is said where the figures are too, not on the terminal only
    assert ("**Warning:** INT8 scores" in index) == ("INT8 scores" in (summary["warning"] or ""))
    assert "`tensorrt` profile, method `entropy`" in index
    # scored on a scene calibration never saw, named so `edge eval --data` can score it again
    assert "Evaluated on `synthetic://shapes?seed=10011` (100 images)" in index
    assert "INT8 as TensorRT computes it (its Q/DQ in float" in index
    assert "## Range methods on 1 held-out frame\n" in index and "| entropy |" in index
    # the evidence, as the terminal's table
    assert re.search(r"\(\d+ FP32 and \d+ INT8 detections?\) \|", index), index
    entropy_row = next(line for line in index.splitlines() if line.startswith("| entropy |"))
    assert entropy_row.endswith("| requested |"), entropy_row  # --method named it: not chosen
    assert "| chosen |" not in index
    assert " boxes`: " in index and " scores`: " in index  # the written model's, apart
    # measured on the frames the table's rows were judged on, in the profile's arithmetic:
    # the written (requested) model's figures are its row's
    assert "on the 1 held-out frame;" in index
    entropy = next(m for m in summary["methods"] if m["method"] == "entropy")
    for part in ("boxes", "scores"):
        line = next(line for line in index.splitlines() if f" {part}`: " in line)
        assert float(line.split(": ")[-1]) == pytest.approx(entropy[f"{part}_sqnr_db"], abs=0.15)
    assert (tmp_path / "report" / "class_ap.png").stat().st_size > 1000
    assert list((tmp_path / "report").glob("hist_*.png"))


@pytest.mark.parametrize("profile", ["tensorrt", "cpu"])
def test_a_reports_worst_layers_are_the_written_models_int8_layers(demo_model, tmp_path, profile):
    """With --keep-float, the layers kept in float are listed apart, not among the INT8 layers
    with the lowest SQNR (measured on the model written, not the one before keep-float)."""
    result = edge("calibrate", demo_model, "--images", FRAMES, "--max-images", "16",
                  "--min-images", "4", "-o", tmp_path / "int8.onnx", "--keep-float", "2",
                  "--profile", profile, "--report", tmp_path / "report", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    kept = summary["kept_float"]
    latency = summary["cpu_latency"]
    if profile == "cpu":  # timed on this CPU, in the JSON and the report alike
        assert set(latency) == {"fp32_ms", "int8_ms", "ratio", "runs", "warning"}
        assert (latency["warning"] is None) == (latency["ratio"] < 1.0)
        assert latency["ratio"] == pytest.approx(latency["int8_ms"] / latency["fp32_ms"],
                                                 rel=0.01)
        # the report says 2 decimals of what --json says to 3: compared as numbers, since
        # formatting the JSON's rounded value again can land on the other side (4.4549 ->
        # 4.455 -> "4.46" against the report's "4.45")
        said = re.search(r"FP32 ([\d.]+) ms, INT8 ([\d.]+) ms",
                         (tmp_path / "report" / "index.md").read_text())
        assert said is not None
        assert float(said[1]) == pytest.approx(latency["fp32_ms"], abs=0.0051)
        assert float(said[2]) == pytest.approx(latency["int8_ms"], abs=0.0051)
    else:
        assert latency is None
    index = (tmp_path / "report" / "index.md").read_text()
    listed = index.split("INT8 layers with the lowest SQNR")[1].split("\n\n")[1].splitlines()
    assert len(kept) == 2 and listed
    assert all(line.startswith("- `") and line.endswith(" dB") for line in listed), listed
    assert not any(f"`{name}`" in line for name in kept for line in listed), (kept, listed)
    assert "Kept in float: " + ", ".join(f"`{name}`" for name in kept) in index


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--images", "/no/such/folder"], "does not exist"),
        (["--images", FRAMES, "--method", "kl"], "invalid choice"),
        (["--images", FRAMES, "--trt-version", "11.0", "--cache", "{tmp}/c.cache"],
         "strongly typed"),
        (["--images", "{tmp}"], "0 usable image"),
        (["--images", FRAMES, "--max-images", "-3"], "must be a whole number >= 1"),
        (["--images", FRAMES, "--max-images", "0"], "must be a whole number >= 1"),
        (["--images", FRAMES, "--keep-float", "-1"], "must be a whole number >= 0"),
        (["--images", FRAMES, "--keep-float", "500"], "would keep all"),
        (["--images", FRAMES, "--threads", "-1"], "must be a whole number >= 0"),
        (["--images", FRAMES, "--cache", "{tmp}/no/c.cache"], "(of --cache"),
        (["--images", FRAMES, "--drift-reference", "{tmp}/no/d.json"], "(of --drift-reference"),
        # an unset shell variable: it wrote <model>.drift.json as the option alone does
        (["--images", FRAMES, "--drift-reference="], "argument --drift-reference: an empty "
         "path; name the file to write the profile to, or give the option alone to write "
         "<model>.drift.json"),
        (["--images", FRAMES, "--drift-reference", " "], "argument --drift-reference: an "
         "empty path"),
        (["--images", FRAMES, "--drift-reference", "{tmp}/a.txt.drift.json"],
         "--drift-reference {tmp}/a.txt.drift.json is {tmp}/a.txt's own profile path"),
        (["--images", FRAMES, "--drift-reference", "{tmp}/a.txt"],
         "--drift-reference {tmp}/a.txt names a model or a file that is no drift profile"),
        (["--images", FRAMES, "--cache", "{tmp}/int8.onnx"], "-o and --cache both name"),
        # a user check: a photo, another model and a report page were overwritten, exit 0
        (["--images", FRAMES, "--cache", "{tmp}/a.txt"],
         "--cache {tmp}/a.txt: that file exists and is not a TensorRT calibration cache, so it "
         "would be lost; give another path, or remove the file first"),
        (["--images", FRAMES, "--cache", "{tmp}/other.onnx"],
         "--cache {tmp}/other.onnx: a calibration cache is text, not a model; name it .cache"),
        (["--images", FRAMES, "--cache", "{tmp}/c.cache", "--trt-version", "10"],
         "TensorRT version '10' is not like 10.3.0"),
        (["--images", FRAMES, "--cache", "{tmp}/c.cache", "--trt-version", ""],
         "TensorRT version '' is not like 10.3.0"),
        (["--images", FRAMES, "--max-images", "1"], "--max-images 1 is below --min-images 2"),
        (["--images", FRAMES, "--percentile", "101"], "must be a percentile in (0, 100]"),
        # outputs that are folders, and options used only after calibrating, fail at once
        (["--images", FRAMES, "-o", "{tmp}"], "is a folder; name the file to write"),
        # an ONNX model under another format's name: the daemon's TensorRT runner refuses it
        (["--images", FRAMES, "-o", "{tmp}/int8.pt"], "-o {tmp}/int8.pt: the model written is "
         "ONNX, and model files are told by their extension (a .pt is read as PyTorch's, the "
         "TensorRT runner takes only .onnx); name it {tmp}/int8.onnx"),
        (["--images", FRAMES, "-o", "{tmp}/int8"], "name it {tmp}/int8.onnx"),
        (["--images", FRAMES, "--ranges", "{tmp}"], "--ranges {tmp} is a folder"),
        # a user check: `--cache /dev/null` (as root) replaced the device with a file
        (["--images", FRAMES, "--cache", "{tmp}/pipe"],
         "--cache {tmp}/pipe is a named pipe, not a file: writing it would replace it with one"),
        (["--images", FRAMES, "--ranges", "{tmp}/pipe"], "--ranges {tmp}/pipe is a named pipe"),
        (["--images", "/no/such/folder", "--trt-version", "7.0", "--cache", "{tmp}/c.cache"],
         "older than 8.5"),
        (["--images", FRAMES, "--eval-data", "{tmp}"], "--eval-data is read only by --report"),
        (["--images", FRAMES, "--report", "{tmp}/r", "--eval-data", "/no/such/data"],
         "--eval-data: evaluation data /no/such/data does not exist"),
        (["--images", FRAMES, "--report", "{tmp}/r", "--eval-data", "synthetic://shapes?bad=1"],
         "--eval-data: source 'synthetic://shapes?bad=1': unknown option(s) bad"),
        (["--images", "{tmp}", "--report", "{tmp}/r"], "without --eval-data, reads --images"),
        (["--images", FRAMES, "--report", "{tmp}/typo/r"],
         "output directory {tmp}/typo (of --report {tmp}/typo/r) does not exist; create it"),
        (["--images", FRAMES, "--report", "{tmp}/a.txt/r"],
         "output directory {tmp}/a.txt (of --report {tmp}/a.txt/r) is a file, not a folder; "
         "choose another folder"),
        (["--images", FRAMES, "-o", "{tmp}/a.txt/int8.onnx"],
         "output directory {tmp}/a.txt (of -o {tmp}/a.txt/int8.onnx) is a file, not a folder"),
        (["--images", FRAMES, "--trt-version", "10.3.0"], "add --cache FILE or leave"),
        (["--images", "{tmp}", "--min-images", "3"], "has 0 usable image(s); at least 3 are"),
    ],
)
def test_cli_bad_inputs_exit_2_and_write_nothing(demo_model, tmp_path, args, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("a file where a folder is expected")
    os.mkfifo(out / "pipe")
    args = [a.replace("{tmp}", str(out)) for a in args]
    result = edge("calibrate", demo_model, "-o", out / "int8.onnx", "--max-images", "4",
                  "--min-images", "2", *args)
    assert result.returncode == 2, result.stderr
    assert message.replace("{tmp}", str(out)) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (out / "int8.onnx").exists() and not (out / "c.cache").exists()


def test_a_report_scores_the_synthetic_scene_eval_data_names(demo_model, tmp_path):
    """--eval-data synthetic://... is scored as given (not moved to an unseen seed, as a
    synthetic --images scene is), with the figures `edge eval` gives on it."""
    scene = "synthetic://shapes?seed=77"
    result = edge("calibrate", demo_model, "--images", FRAMES, "--max-images", "8",
                  "--min-images", "4", "-o", tmp_path / "int8.onnx", "--report",
                  tmp_path / "report", "--eval-data", scene, "--profile", "cpu")
    assert result.returncode == 0, result.stderr
    index = (tmp_path / "report" / "index.md").read_text()
    assert f"Evaluated on `{scene}` (100 images)" in index
    scored = edge("eval", tmp_path / "int8.onnx", "--data", scene, "--json")
    map50 = json.loads(scored.stdout.strip().splitlines()[-1])["map50"]
    row = next(line for line in index.splitlines() if line.startswith("| map50 |"))
    assert row.split("|")[3].strip() == f"{map50:.4f}"  # the INT8 column


def test_a_report_on_a_yolo_dataset_names_the_split_it_scored(demo_model, tmp_path):
    """A dataset with train and val splits is scored on val alone, and the report's header
    and `evaluated_on` name that split's folder, not the dataset's (a user check)."""
    import shutil

    from edge.synthetic.dataset import write_yolo_dataset

    for split, seed in (("train", 1), ("val", 2)):
        write_yolo_dataset(tmp_path / split, frames=3, seed=seed)
        for kind in ("images", "labels"):
            shutil.move(tmp_path / split / kind, tmp_path / "data" / kind / split)
    result = edge("calibrate", demo_model, "--images", FRAMES, "--max-images", "8",
                  "--min-images", "4", "--method", "minmax", "-o", tmp_path / "int8.onnx",
                  "--report", tmp_path / "report", "--eval-data", tmp_path / "data", "--json")
    assert result.returncode == 0, result.stderr
    val = tmp_path / "data" / "images" / "val"
    scored = json.loads(result.stdout.strip().splitlines()[-1])["report_accuracy"]
    assert scored["evaluated_on"] == str(val) and scored["int8"]["images"] == 3
    assert f"Evaluated on `{val}` (3 images)" in (tmp_path / "report" / "index.md").read_text()
    from calibration.datasets import scored_images  # what the warnings name, the same split

    assert scored_images(tmp_path / "data", "detect") == val


def test_cli_refuses_to_overwrite_its_input_and_names_a_folder_passed_as_model(demo_model,
                                                                                tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(demo_model.read_bytes())
    for option in ("-o", "--ranges", "--drift-reference"):
        args = ["-o", tmp_path / "int8.onnx", option, model] if option != "-o" else ["-o", model]
        result = edge("calibrate", model, "--images", FRAMES, "--max-images", "4", *args)
        assert result.returncode == 2, result.stderr
        assert f"{option} {model} is the input model itself" in result.stderr
    assert model.read_bytes() == demo_model.read_bytes()
    result = edge("calibrate", tmp_path, "--images", FRAMES, "-o", tmp_path / "int8.onnx")
    assert result.returncode == 2 and "is a folder; pass the .onnx file" in result.stderr
    (tmp_path / "empty.onnx").write_bytes(b"")
    result = edge("calibrate", tmp_path / "empty.onnx", "--images", FRAMES, "-o",
                  tmp_path / "int8.onnx")
    assert result.returncode == 2 and "empty.onnx is empty (0 bytes)" in result.stderr
    (tmp_path / "report").write_text("a file")
    result = edge("calibrate", model, "--images", FRAMES, "-o", tmp_path / "int8.onnx",
                  "--report", tmp_path / "report")
    assert result.returncode == 2 and "--report" in result.stderr and "is a file" in result.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "int8.onnx").exists()


def test_a_report_on_labels_without_objects_fails_before_calibrating(demo_model, tmp_path):
    from edge.synthetic.dataset import write_yolo_dataset

    write_yolo_dataset(tmp_path / "data", frames=2, seed=1)
    for label in (tmp_path / "data" / "labels").iterdir():
        label.write_text("")
    result = edge("calibrate", demo_model, "--images", FRAMES, "-o", tmp_path / "int8.onnx",
                  "--report", tmp_path / "report", "--eval-data", tmp_path / "data")
    assert result.returncode == 2 and "hold no objects" in result.stderr, result.stderr
    assert not (tmp_path / "int8.onnx").exists() and not (tmp_path / "report").exists()


def test_a_report_folder_holding_another_index_md_is_refused_before_calibrating(demo_model,
                                                                                tmp_path):
    """A user check (of `edge eval --field --report`): a folder's own index.md was replaced."""
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "index.md").write_text("# Field accuracy\n")  # another kind
    result = edge("calibrate", demo_model, "--images", FRAMES, "-o", tmp_path / "int8.onnx",
                  "--report", tmp_path / "report")
    assert result.returncode == 2, result.stderr
    assert ("holds an index.md that does not start '# INT8 calibration report' as an earlier "
            "report of this kind does") in result.stderr
    assert not (tmp_path / "int8.onnx").exists()
    assert (tmp_path / "report" / "index.md").read_text() == "# Field accuracy\n"


def test_a_report_folder_holding_a_plot_of_the_users_is_refused_before_calibrating(tmp_path):
    """A user check: a folder with no earlier report but a `hist_0.png` of the user's had it
    replaced by a histogram, without a word. The plot names an earlier report shows are its
    own; the others are the user's."""
    from calibration.report import REPORT_HEADING, REPORT_PLOTS
    from edge.files import require_report_folder

    report = tmp_path / "report"
    report.mkdir()
    (report / "notes.txt").write_text("mine")
    require_report_folder(report, REPORT_HEADING, plots=REPORT_PLOTS)  # not named as a plot
    (report / "hist_0.png").write_text("mine")
    (report / "class_ap.png").write_text("mine")
    with pytest.raises(InputError, match=re.escape(
            f"--report {report} holds class_ap.png, hist_0.png, named as the report's plots "
            "are, which no earlier report there shows: writing the report would replace them; "
            "name another folder, or move those files away")):
        require_report_folder(report, REPORT_HEADING, plots=REPORT_PLOTS)
    (report / "index.md").write_text(f"{REPORT_HEADING}\n\n![a](hist_0.png)\n")
    with pytest.raises(InputError, match=r"holds class_ap\.png, named as the report's plots "
                                         r"are, .* replace it; .* move that file away"):
        require_report_folder(report, REPORT_HEADING, plots=REPORT_PLOTS)
    (report / "class_ap.png").unlink()
    assert require_report_folder(report, REPORT_HEADING, plots=REPORT_PLOTS) == report
    (report / "hist_9.png").write_text("mine")  # a name no report writes: left alone
    assert require_report_folder(report, REPORT_HEADING, plots=REPORT_PLOTS) == report


@pytest.mark.parametrize(("signal_name", "exit_code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_interrupted_calibration_writes_nothing(tmp_path, signal_name, exit_code):
    """Ctrl-C or SIGTERM (`timeout`, CI, systemd) during the statistics pass: exit 128 + the
    signal with a line saying so, no output file, no temporary file left (the statistics
    session's optimised model is saved in a temporary folder), and no abort from native
    threads (background sessions) being torn down."""
    import os
    import signal
    import subprocess
    import time

    out, scratch = tmp_path / "out" / "int8.onnx", tmp_path / "tmp"
    out.parent.mkdir()
    scratch.mkdir()
    process = subprocess.Popen(
        edge_at_a_terminal("calibrate", "edge/models/shapes.onnx", "--images",
                           "synthetic://shapes?seed=7", "--max-images", "1000", "-o", str(out)),
        stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(scratch)})
    assert process.stderr is not None
    started = time.monotonic()
    while "calibrating on" not in process.stderr.readline():  # the statistics pass begins
        assert time.monotonic() - started < 60
    time.sleep(0.5)  # inside it (1000 frames: seconds), background sessions made or running
    process.send_signal(getattr(signal, signal_name))
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == exit_code, stderr
    assert "edge: interrupted" in stderr and "Traceback" not in stderr
    assert not list(out.parent.iterdir())
    # `.ses`: ONNX Runtime's own session-id file, written once at import and reused
    assert not [path for path in scratch.iterdir() if path.name != ".ses"]


@pytest.mark.parametrize("stopped_in", ["report", "drift"])
def test_an_interrupt_while_the_outputs_are_written_leaves_them_as_they_were(
        demo_model, tmp_path, stopped_in):
    """Ctrl-C in the slow last steps, the drift reference or the report (seconds to minutes,
    after the INT8 model exists): no output is written, a file already at an output path keeps
    its content, and no staged file is left (README: written whole or not at all)."""
    import subprocess
    import sys

    target = ("calibration.report.write_report" if stopped_in == "report" else
              "calibration.drift_reference.drift_reference_from_images")
    module, _, name = target.rpartition(".")
    interrupting = (f"import importlib, runpy\nmodule = importlib.import_module({module!r})\n"
                    "def stop(*args, **kwargs):\n    raise KeyboardInterrupt\n"
                    f"setattr(module, {name!r}, stop)\n"
                    "runpy.run_module('edge', run_name='__main__')\n")
    out = tmp_path / "int8.onnx"
    out.write_bytes(b"an earlier model")
    result = subprocess.run(
        [sys.executable, "-c", interrupting, "calibrate", str(demo_model), "--images", FRAMES,
         "--max-images", "16", "-o", str(out), "--drift-reference", "--cache",
         str(tmp_path / "c.cache"), "--ranges", str(tmp_path / "r.json"), "--report",
         str(tmp_path / "report")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 130, result.stderr
    assert "edge: interrupted" in result.stderr and "Traceback" not in result.stderr
    assert out.read_bytes() == b"an earlier model"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["int8.onnx"]


def test_model_given_after_exclude_is_still_the_model(demo, demo_model, tmp_path):
    """`--exclude NODE ... MODEL` (argparse gives every word after --exclude to it) and repeated
    --exclude options: the model is found and every named node kept in float."""
    model, _ = demo
    first, second = [n.name for n in model.graph.node if n.op_type == "Conv"][1:3]
    result = edge("calibrate", "--exclude", first, "--exclude", second, demo_model, "--images",
                  FRAMES, "--max-images", "4", "--min-images", "2", "--method", "mse", "-o",
                  tmp_path / "o.onnx", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["kept_float"] == [first, second]


def test_model_taken_by_drift_reference_is_recovered(demo_model, tmp_path, capsys):
    """`--drift-reference MODEL.onnx` (an option with an optional value) leaves the model to
    MODEL and the reference at its default path; without any model the error says where
    MODEL goes (exit 2)."""
    from edge.cli import build_parser, main
    from edge.cli.common import recover_model_argument

    args = build_parser().parse_args(["calibrate", "--drift-reference", str(demo_model),
                                      "--images", FRAMES, "-o", str(tmp_path / "o.onnx")])
    assert recover_model_argument(args, "no model") == demo_model
    assert args.drift_reference == "" and args.model == demo_model
    args = build_parser().parse_args(["calibrate", "--exclude", "a", str(demo_model),
                                      "--exclude", "b", "--images", FRAMES, "-o", "o.onnx"])
    assert recover_model_argument(args, "no model") == demo_model and args.exclude == ["a", "b"]
    assert main(["calibrate", "--exclude", "a", str(tmp_path / "typo.onnx"), "--images", FRAMES,
                 "-o", str(tmp_path / "o.onnx")]) == 2
    assert "typo.onnx does not exist" in capsys.readouterr().err
    assert main(["calibrate", "--exclude", "a", "b", "--images", FRAMES,
                 "-o", str(tmp_path / "o.onnx")]) == 2
    assert ("needs MODEL.onnx, the model edge convert wrote (give it before --exclude and "
            "--drift-reference, which take what follows as their values)"
            in capsys.readouterr().err) and not (tmp_path / "o.onnx").exists()


def test_a_classifier_report_on_a_flat_folder_fails_before_writing(tmp_path):
    """--report's default --eval-data is --images; for a classifier a flat folder of photos is
    not labelled data. Said before calibrating, with the layout it needs, and an existing -o
    is left as it was (the check used to pass and the report failed after the write)."""
    import cv2

    from converters.convert import convert
    from tests.converters.tiny_models import TinyClassifier, export_onnx

    source = export_onnx(seeded(TinyClassifier(2, softmax=True)), tmp_path / "c.onnx", 32, 32)
    convert(source, ConvertOptions(labels=("dark", "bright"))).write(tmp_path / "cls.onnx")
    (tmp_path / "photos").mkdir()
    for i in range(4):
        cv2.imwrite(str(tmp_path / "photos" / f"{i}.png"), np.full((40, 40, 3), 60 * i, np.uint8))
    (tmp_path / "photos" / "dark").mkdir()  # a class folder, but no images in it
    (tmp_path / "int8.onnx").write_bytes(b"kept")
    result = edge("calibrate", tmp_path / "cls.onnx", "--images", tmp_path / "photos", "-o",
                  tmp_path / "int8.onnx", "--report", tmp_path / "report")
    assert result.returncode == 2, result.stderr
    assert "holds no class folders with images" in result.stderr
    assert "DIR/cat/1.jpg" in result.stderr and "Pass --eval-data" in result.stderr
    assert (tmp_path / "int8.onnx").read_bytes() == b"kept"
    assert not (tmp_path / "report").exists()


def test_a_classifier_report_shows_top1_per_class(tmp_path):
    """A user check: the report gave top-1 over all images only, where INT8 often costs one
    class alone."""
    import cv2

    from converters.convert import convert
    from tests.converters.tiny_models import TinyClassifier, export_onnx

    source = export_onnx(seeded(TinyClassifier(2, softmax=True)), tmp_path / "c.onnx", 32, 32)
    convert(source, ConvertOptions(labels=("dark", "bright"))).write(tmp_path / "cls.onnx")
    for label, value in (("dark", 20), ("bright", 220)):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(8):
            cv2.imwrite(str(tmp_path / "data" / label / f"{i}.png"),
                        np.full((40, 40, 3), value + 3 * i, np.uint8))
    result = edge("calibrate", tmp_path / "cls.onnx", "--images", tmp_path / "data", "-o",
                  tmp_path / "int8.onnx", "--min-images", "8", "--report", tmp_path / "report",
                  "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])["report_accuracy"]
    index = (tmp_path / "report" / "index.md").read_text()
    assert "## Per-class top-1\n\n| class | images | FP32 | INT8 | change |" in index
    # how many answers INT8 kept, counted here on both models (a user check: top-1 alike for
    # FP32 and INT8 hid 23 of 120 answers changed both ways)
    import onnxruntime as ort

    answers = []
    for path in (tmp_path / "cls.onnx", tmp_path / "int8.onnx"):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        answers.append([int(session.run(None, {name: cv2.resize(cv2.imread(str(image)),
                                                                (32, 32))[None]})[0].argmax())
                        for image in sorted((tmp_path / "data").rglob("*.png"))])
    same = sum(a == b for a, b in zip(*answers, strict=True))
    assert (f"INT8 {summary['int8']['top1']:.4f}; INT8 gives FP32's answer on {same} of the 16 "
            f"images ({100 * same / 16:.1f}%)") in index
    assert "answers" not in summary["fp32"]  # compared, not reported per image
    assert summary["top1_agreement"] == round(same / 16, 4)  # as the report says (a user check)
    for label in ("dark", "bright"):
        fp32 = summary["fp32"]["per_class_top1"][label]
        int8 = summary["int8"]["per_class_top1"][label]
        assert summary["fp32"]["per_class_images"][label] == 8
        assert (f"| {label} | 8 | {fp32:.4f} | {int8:.4f} | {100 * (int8 - fp32):+.2f} pt |"
                in index)
    # labels without an image and images that do not decode are named (a user check: in the
    # terminal's log only)
    (tmp_path / "eval" / "dark").mkdir(parents=True)
    (tmp_path / "eval" / "bright").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "eval" / "dark" / f"{i}.png"),
                    np.full((40, 40, 3), 25 + i, np.uint8))
    (tmp_path / "eval" / "dark" / "notes.jpg").write_text("not an image")
    again = edge("calibrate", tmp_path / "cls.onnx", "--images", tmp_path / "data", "-o",
                 tmp_path / "int8.onnx", "--min-images", "8", "--report", tmp_path / "partial",
                 "--eval-data", tmp_path / "eval", "--json")
    assert again.returncode == 0, again.stderr
    partial = json.loads(again.stdout.splitlines()[-1])["report_accuracy"]["int8"]
    assert partial["unscored_classes"] == ["bright"] and partial["images"] == 3
    assert partial["unreadable_images"] == ["dark/notes.jpg"]
    index = (tmp_path / "partial" / "index.md").read_text()
    assert "\nNot scored, no image in the data: 1 label: bright\n" in index
    assert "\nNot scored, unreadable: 1 image: dark/notes.jpg\n" in index


def _classifier_with_a_contrib_op(path: Path) -> Path:
    """Conv -> com.microsoft Gelu -> GlobalAveragePool -> Flatten -> Gemm: ONNX's shape
    inference cannot type anything after the Gelu."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {"W": rng.normal(0, 0.3, (8, 3, 3, 3)), "B": np.zeros(8),
               "FW": rng.normal(0, 0.3, (4, 8)), "FB": rng.normal(0, 0.1, 4)}
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Gelu", ["c"], ["r"], domain="com.microsoft", name="gelu"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "FW", "FB"], ["logits"], transB=1, name="fc")]
    graph = helper.make_graph(
        nodes, "contrib", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_cpu_profile_quantizes_past_an_operator_outside_the_onnx_domain(tmp_path, monkeypatch):
    """The Gemm after a com.microsoft op was a traceback from ONNX Runtime's quantizer (its
    input untyped, so never observed); excluding it wrote a float model labelled INT8."""
    from converters.convert import convert

    source = _classifier_with_a_contrib_op(tmp_path / "contrib.onnx")
    convert(source, ConvertOptions(labels=("a", "b", "c", "d"))).write(tmp_path / "m.onnx")
    model, spec = load_float_model(tmp_path / "m.onnx")
    frames = frames_from(FRAMES, max_images=12)
    calibrated = calibrate(model, spec, frames, CalibrateOptions(profile="cpu", progress=False))
    assert {"r", "g", "f"} <= set(calibrated.ranges.ranges)
    fc = next(n for n in calibrated.model.graph.node if n.op_type == "Gemm")
    producers = {o: n.op_type for n in calibrated.model.graph.node for o in n.output}
    assert producers[fc.input[0]] == producers[fc.input[1]] == "DequantizeLinear"
    # the cpu profile leaves the 3-channel stem float here: with fc excluded no weight is
    # INT8 (its GlobalAveragePool's activation Q/DQ alone is no INT8 model), known after the
    # build; with both weighted layers excluded, known before any frame is read
    with pytest.raises(InputError, match=r"nothing would be quantized.*with fc kept float"):
        calibrate(model, spec, frames, CalibrateOptions(profile="cpu", exclude=("fc",),
                                                        progress=False))
    import calibration.stats

    monkeypatch.setattr(calibration.stats.StatsCollector, "collect", None)
    for options in (CalibrateOptions(profile="cpu", exclude=("conv", "fc")),
                    CalibrateOptions(profile="tensorrt", exclude=("conv", "fc"))):
        with pytest.raises(InputError, match=r"nothing would be quantized.*conv, fc kept float"):
            calibrate(model, spec, frames, options)


@pytest.mark.parametrize("eval_data", [None, "synthetic://shapes?seed=3"])
def test_a_report_on_the_synthetic_scene_needs_a_model_of_its_shapes(tmp_path, eval_data):
    """The scene's truth is circles, squares, triangles and stars: a model of other classes
    is refused before calibrating, instead of being scored with its ids paired to those."""
    from edge.spec import InputSpec, ModelSpec
    from tests.onnx_graphs import constant_head_model

    spec = ModelSpec(task="detect", labels=["cat", "dog"], head="anchor_free", output="output0",
                     input=InputSpec(name="images", width=64, height=64))
    model = constant_head_model(tmp_path / "m.onnx", (1, 6, 84), spec)
    extra = ["--eval-data", eval_data] if eval_data else []
    result = edge("calibrate", model, "--images", FRAMES, "--max-images", "4", "--min-images",
                  "2", "-o", tmp_path / "int8.onnx", "--report", tmp_path / "report", *extra)
    assert result.returncode == 2, result.stderr
    assert "the synthetic scene holds circle, square, triangle, star" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "int8.onnx").exists()


def test_the_statistics_session_is_released_before_judging(demo, monkeypatch):
    """The statistics session (and ONNX Runtime's arena for the observed activations: 2 GB for
    an 800x608 PP-PicoDet under the cpu profile) is gone before the candidates are judged."""
    import gc
    import weakref

    import calibration.stats
    import converters.quantize

    sessions: list[weakref.ref] = []
    alive_when_judging: list[int] = []

    class Tracked(calibration.stats.ObservingSession):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            sessions.append(weakref.ref(self))

    class Judge(converters.quantize.HeldOutJudge):
        def __init__(self, *args, **kwargs):
            gc.collect()
            alive_when_judging.append(sum(ref() is not None for ref in sessions))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(calibration.stats, "ObservingSession", Tracked)
    monkeypatch.setattr(converters.quantize, "HeldOutJudge", Judge)
    model, spec = demo
    calibrated = calibrate(model, spec, frames_from(FRAMES, max_images=16),
                           CalibrateOptions(progress=False))
    assert len(sessions) == 1 and alive_when_judging == [0]
    assert calibrated.frames == 14  # 2 of 16 held out


def test_keep_float_on_the_cpu_profile_spends_no_slot_on_a_layer_float_already(caplog):
    """ImageNet's mean keeps the `cpu` profile's stem float; `--keep-float` picked it among its
    layers, so one fewer was kept (a user check)."""
    from converters.quantize import _int8_layers
    from tests.converters.tiny_models import TinyClassifier

    converted = convert_module(seeded(TinyClassifier()), ConvertOptions(
        input_size=(64, 96), labels=("a", "b", "c"),
        normalisation=Normalisation(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))),
        "tiny")
    with caplog.at_level(logging.INFO):
        result = calibrate(converted.model, converted.spec, frames_from(FRAMES, max_images=8),
                           CalibrateOptions(profile="cpu", method="minmax", compare=False,
                                            keep_float=2, progress=False))
    stem = "/features/features.0/Conv"
    assert stem in {n.name for n in result.model.graph.node if n.op_type == "Conv"}
    assert stem not in _int8_layers(result.model)  # float: ImageNet's mean
    assert stem not in result.excluded
    # two of the three int8 layers (/features/features.2/Conv, whose ReLU the quantizer
    # fuses, is measured too: `tests/calibration/test_layer_sqnr.py`)
    assert len(result.excluded) == 2 and set(result.excluded) < {
        "/features/features.2/Conv", "/features/features.4/Conv", "/head/Gemm"}
    assert "could be measured" not in caplog.text


def test_a_folder_of_few_frames_is_calibrated_with_a_warning(demo_model, tmp_path):
    """36 pages calibrated a document-layout detector in silence, its method judged on 4."""
    import cv2

    folder = tmp_path / "few"
    folder.mkdir()
    for index, image in enumerate(frames_from("synthetic://shapes?seed=3",
                                              max_images=12).images()):
        cv2.imwrite(str(folder / f"{index}.jpg"), image)
    result = edge("calibrate", demo_model, "--images", folder, "-o", tmp_path / "q.onnx")
    assert result.returncode == 0, result.stderr
    assert (f"{folder} has 12 usable frames: ranges from 128 or more camera frames are "
            "steadier, and the range methods are judged on only 1 frame held back; the model "
            "is calibrated all the same") in result.stderr
    capped = edge("calibrate", demo_model, "--images", folder, "-o", tmp_path / "c.onnx",
                  "--max-images", "12")
    assert capped.returncode == 0 and "usable frames" not in capped.stderr  # as asked


def test_report_plots_leave_matplotlibs_info_lines_out_of_the_log():
    """`edge eval --field --report` printed six of matplotlib's INFO lines about categorical
    units."""
    from calibration.plotting import pyplot

    pyplot("a test report")
    assert logging.getLogger("matplotlib").getEffectiveLevel() == logging.WARNING


def test_a_rewritten_report_removes_only_the_plots_the_earlier_one_showed(tmp_path):
    """A user check: a rerun deleted every `hist_*.png` in the folder, a file of the user's
    named like one too; only those the earlier index.md shows are the report's own."""
    from calibration.report import earlier_report_files
    from edge.files import StagedOutputs

    report = tmp_path / "report"
    report.mkdir()
    (report / "index.md").write_text("# INT8 calibration report\n\n![a](hist_0.png)\n"
                                     "![b](hist_1.png)\n![per-class AP](class_ap.png)\n")
    for name in ("hist_0.png", "hist_1.png", "class_ap.png", "hist_9.png"):
        (report / name).write_text("old")
    owned = earlier_report_files(report)
    assert owned == ("index.md", "hist_0.png", "hist_1.png", "class_ap.png")
    with StagedOutputs() as staged:
        folder = staged.folder(report, owned)
        for name in ("index.md", "hist_0.png"):
            (folder / name).write_text("new")
        staged.publish()
    assert {p.name: p.read_text() for p in report.iterdir()} == {
        "index.md": "new", "hist_0.png": "new", "hist_9.png": "old"}
    assert earlier_report_files(tmp_path / "none") == ("index.md",)
