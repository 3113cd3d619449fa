"""NMS-free detectors (Ultralytics YOLO26 and YOLOv10 by default, any export with nms=True):
their output is the final detections, [N, K, 6] (x1 y1 x2 y2 score class). They convert with
no options from Ultralytics' metadata, calibrate with both profiles (the selection stays in
float), and decode without a second NMS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edge.postprocess import DetectionDecoder
from edge.preprocess import LetterboxGeometry
from edge.spec import ModelSpec, spec_from_model
from tests.converters.cli_results import assert_refused
from tests.converters.tiny_models import TinyDetector, TinyEndToEnd, export_onnx
from tests.mqtt_watch import retained_status

SIZE = 64
NAMES = ("person", "car", "dog")


def _ultralytics_export(path: Path, metadata: bool = True, classes: int = 3) -> Path:
    """What `yolo export format=onnx` writes for an end-to-end detector: its metadata too."""
    torch.manual_seed(0)
    props = {"names": str(dict(enumerate(NAMES[:classes]))), "imgsz": str([SIZE, SIZE]),
             "stride": "4", "task": "detect", "end2end": "True",
             "args": "{'batch': 1, 'half': False, 'nms': False}"} if metadata else None
    return export_onnx(TinyEndToEnd(classes), path, SIZE, SIZE, props)


def _spec(path: Path) -> ModelSpec:
    return spec_from_model(onnx.load(str(path)), str(path))


def test_an_ultralytics_end_to_end_export_converts_with_no_options(tmp_path, edge):
    out = tmp_path / "e2e.onnx"
    result = edge("convert", _ultralytics_export(tmp_path / "yolo26.onnx"), "-o", out)
    assert result.returncode == 0, result.stderr
    spec = _spec(out)
    assert (spec.task, spec.head, spec.labels) == ("detect", "end_to_end", NAMES)
    frame = np.random.default_rng(0).integers(0, 256, (1, SIZE, SIZE, 3), np.uint8)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    rows = session.run(None, {spec.input.name: frame})[0][0]
    assert rows.shape == (20, 6)
    assert np.all(np.diff(rows[:, 4]) <= 0)  # by score, as the model chose them
    detections = DetectionDecoder(spec)(rows, LetterboxGeometry.fit(SIZE, SIZE, SIZE, SIZE))
    kept = rows[rows[:, 4] >= spec.postprocess.score_threshold][:spec.postprocess.max_detections]
    np.testing.assert_allclose(detections.boxes, np.clip(kept[:, :4], 0, SIZE), atol=1e-4)
    np.testing.assert_array_equal(detections.class_ids, kept[:, 5].astype(np.int64))


def test_final_detections_are_not_suppressed_again():
    """Two overlapping people the model reported both stay (a second NMS would drop one);
    the score threshold and the detection count still apply; boxes go to frame pixels."""
    spec = ModelSpec.model_validate({
        "task": "detect", "labels": list(NAMES), "head": "end_to_end", "output": "out",
        "input": {"name": "images", "width": 64, "height": 64}})
    rows = np.array([[10, 10, 30, 50, 0.9, 0], [12, 10, 32, 50, 0.8, 0],
                     [40, 40, 60, 60, 0.1, 1], [0, 0, 0, 0, 0.0, 0]], np.float32)
    geometry = LetterboxGeometry.fit(128, 64, 64, 64)  # a 2:1 frame: bars above and below
    detections = DetectionDecoder(spec)(rows, geometry)
    assert detections.class_ids.tolist() == [0, 0]
    np.testing.assert_allclose(detections.scores, [0.9, 0.8])
    np.testing.assert_allclose(detections.boxes, geometry.boxes_to_source(rows[:2, :4].copy()))
    outside = rows.copy()
    outside[0, 5] = 7
    with pytest.raises(Exception, match="class index 7, but the spec lists 3 labels"):
        DetectionDecoder(spec)(outside, geometry)


def test_without_metadata_the_values_tell_final_detections_from_two_class_scores(tmp_path,
                                                                                  edge):
    """[N, K, 6] is also a two-class [N, A, 4+nc]: rows by descending score with whole class
    indices are final detections; a two-class detector's own output stays what it is."""
    for classes in (3, 2):
        plain = _ultralytics_export(tmp_path / f"plain{classes}.onnx", metadata=False,
                                    classes=classes)
        out = tmp_path / f"e2e{classes}.onnx"
        result = edge("convert", plain, "-o", out, "--labels", ",".join(NAMES[:classes]))
        assert result.returncode == 0, result.stderr
        assert _spec(out).head == "end_to_end"
    two = export_onnx(TinyDetector(2, "anchor_free_transposed"), tmp_path / "two.onnx", SIZE,
                      SIZE)
    result = edge("convert", two, "-o", tmp_path / "t.onnx", "--labels", "a,b", "--stride", "4")
    assert result.returncode == 0, result.stderr
    assert _spec(tmp_path / "t.onnx").head == "anchor_free_transposed"


def test_a_head_other_than_the_metadata_says_is_refused(tmp_path, edge):
    result = edge("convert", _ultralytics_export(tmp_path / "yolo26.onnx"), "-o",
                  tmp_path / "x.onnx", "--head", "yolov5")
    assert_refused(result, "--head yolov5: its Ultralytics metadata says the output is final "
                           "detections (end2end or nms=True), end_to_end ([N, K, 6]); leave "
                           "--head out")


@pytest.mark.parametrize("profile", ["cpu", "tensorrt"])
def test_an_end_to_end_detector_calibrates_with_its_selection_in_float(profile, tmp_path, edge):
    fp32 = tmp_path / "fp32.onnx"
    assert edge("convert", _ultralytics_export(tmp_path / "yolo26.onnx"), "-o",
                fp32).returncode == 0
    int8 = tmp_path / "int8.onnx"
    result = edge("calibrate", fp32, "--images", "synthetic://shapes?seed=2", "-o", int8,
                  "--profile", profile, "--max-images", "16")
    assert result.returncode == 0, result.stderr
    graph = onnx.load(str(int8)).graph
    producers = {o: n for n in graph.node for o in n.output}
    for node in graph.node:  # the selection and the class column: never quantized
        if node.op_type in ("TopK", "GatherElements", "Mod", "Div", "Concat") and \
                node.output[0] not in ("", None):
            assert all(producers.get(i) is None or producers[i].op_type != "DequantizeLinear"
                       for i in node.input), (profile, node.name)
    spec = _spec(int8)
    assert spec.head == "end_to_end"
    assert ("postprocess: score >= 0.25, no NMS (the model's own selection, end to end), at "
            "most 100 detections a frame\n" in edge("inspect", int8).stdout)
    frame = np.random.default_rng(1).integers(0, 256, (1, SIZE, SIZE, 3), np.uint8)
    rows = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(
        None, {spec.input.name: frame})[0][0] for p in (fp32, int8)]
    assert set(np.unique(rows[1][:, 5])) <= {0.0, 1.0, 2.0}  # class indices stay whole


def test_a_configured_nms_iou_is_said_to_have_no_effect_on_an_end_to_end_model(tmp_path,
                                                                              caplog):
    from edge.config import load_config
    from edge.daemon import postprocess_settings

    config = tmp_path / "edge.toml"
    config.write_text('device_id = "d"\n[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n[model]\n'
                      'path = "m.onnx"\niou_threshold = 0.6\nscore_threshold = 0.4\n'
                      '[[cameras]]\nname = "c"\nsource = "synthetic://shapes"\n')
    spec = ModelSpec.model_validate({
        "task": "detect", "labels": list(NAMES), "head": "end_to_end", "output": "out",
        "input": {"name": "images", "width": 64, "height": 64}, "name": "yolo26n"})
    settings = postprocess_settings(spec, load_config(config))
    assert settings.score_threshold == 0.4
    assert ("[model] iou_threshold has no effect on yolo26n: its output is final detections"
            in caplog.text)


def _rows() -> np.ndarray:
    """Final detections as a model writes them: by score, a tail of near-equal low scores."""
    rng = np.random.default_rng(4)
    boxes = rng.uniform(0, 50, (12, 2))
    rows = np.concatenate([boxes, boxes + 10, np.zeros((12, 2))], 1).astype(np.float32)
    rows[:, 4] = [0.9, 0.7, 0.7, 0.5, 0.2, 0.05, 3e-5, 3e-5, 2e-5, 2e-5, 1e-5, 1e-5]
    rows[:, 5] = [0, 1, 1, 2, 0, 1, 0, 2, 1, 0, 2, 1]
    return rows


def test_rows_are_paired_as_detections_whatever_their_order():
    from edge.postprocess import paired_rows

    rows = _rows()
    shuffled = rows[[0, 2, 1, 3, 4, 5, 9, 6, 11, 7, 10, 8]]  # a tie and the tail reordered
    reference, output, unpaired = paired_rows(rows, shuffled)
    assert unpaired == 0 and len(reference) == 6  # the six above the tail
    np.testing.assert_array_equal(reference, output)
    changed = shuffled.copy()
    changed[1, 5] = 0  # one of the tied class-1 rows reported as class 0
    assert paired_rows(rows, changed)[2] == 1


def _constant_model(rows: np.ndarray) -> onnx.ModelProto:
    """uint8 frames -> `rows` [1, K, 6], whatever the frame."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
         helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0),
         helper.make_node("Mul", ["m", "zero"], ["z"]),
         helper.make_node("Add", ["rows", "z"], ["output0"])],
        "rows", [helper.make_tensor_value_info("images", TensorProto.UINT8, [1, SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, len(rows), 6])],
        [numpy_helper.from_array(rows[None], "rows"),
         numpy_helper.from_array(np.array(0, np.float32), "zero")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_parity_compares_final_detections_not_row_positions():
    from converters.errors import ParityError
    from converters.verify import check_parity

    rows = _rows()
    frames = np.zeros((2, SIZE, SIZE, 3), np.uint8)
    inputs = np.zeros((2, 3, SIZE, SIZE))
    shuffled = rows[[0, 2, 1, 3, 4, 5, 9, 6, 11, 7, 10, 8]]
    parity = check_parity(_constant_model(rows), "output0", lambda x: shuffled[None], frames,
                          inputs, head="end_to_end")
    assert parity.max_abs_error == 0
    with pytest.raises(ParityError):  # by position the tie and the tail differ
        check_parity(_constant_model(rows), "output0", lambda x: shuffled[None], frames, inputs)
    moved = shuffled.copy()
    moved[0, :4] += 3  # the best detection's box moved by 3 px
    with pytest.raises(ParityError, match="max abs error 3"):
        check_parity(_constant_model(rows), "output0", lambda x: moved[None], frames, inputs,
                     head="end_to_end")
    lost = shuffled.copy()
    lost[3, 5] = 1  # the class-2 detection reported as class 1
    with pytest.raises(ParityError, match="1 of the source's have no counterpart of their "
                                          "class, and 1 of the converted model's"):
        check_parity(_constant_model(rows), "output0", lambda x: lost[None], frames, inputs,
                     head="end_to_end")


def test_calibration_measures_paired_detections():
    from calibration.fidelity import SignalNoise, detector_parts

    rows = _rows()
    shuffled = rows[[0, 2, 1, 3, 4, 5, 9, 6, 11, 7, 10, 8]]
    energy = SignalNoise()
    for part, reference, output in detector_parts("end_to_end", rows[None], shuffled[None]):
        energy.add(part, reference, output)
    assert energy.decibels("boxes") > 200 and energy.decibels("scores") > 200  # no noise at all


def test_rows_pushed_out_at_the_last_place_are_not_counted_missing():
    """Where every row scores above the tail (a model that finds many objects), the K-th place
    is the cut: a tie there puts one row in one output and another in the other."""
    from edge.postprocess import paired_rows

    rows = _rows()
    rows[:, 4] = np.linspace(0.9, 0.3, 12)
    rows[-1, 4] = rows[-2, 4] = 0.3
    other = rows.copy()
    other[-1, :4] += 20  # the other of the tied pair made the cut
    reference, output, unpaired = paired_rows(rows, other)
    assert unpaired == 0 and len(reference) == 10
    np.testing.assert_array_equal(reference, output)


def test_a_model_whose_output_leaves_its_spec_stops_the_daemon_with_exit_2(tmp_path, mosquitto):
    """A class index beyond the labels shows only at run time: the daemon names it once and
    stops (exit 2: not restarted), no traceback, its status `failed`."""
    import subprocess
    import sys

    from converters.convert import ConvertOptions, convert
    from converters.metadata import onnx_with_spec

    converted = convert(_ultralytics_export(tmp_path / "yolo26.onnx"), ConvertOptions())
    spec = converted.spec.model_copy(update={"labels": ("person",)})  # 1 label, 3 classes
    onnx.save(onnx_with_spec(converted.model, spec), str(tmp_path / "model.onnx"))
    config = tmp_path / "edge.toml"
    config.write_text(f'device_id = "d"\n[model]\npath = "model.onnx"\nscore_threshold = 0.01\n'
                      '[[cameras]]\nname = "gate"\nsource = "synthetic://shapes?fps=20&seed=1"\n'
                      f'[mqtt]\nurl = "mqtt://127.0.0.1:{mosquitto.port}"\n')
    result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config),
                             "--seconds", "20"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "camera gate: the model output class index" in result.stderr
    assert "exiting 2, not to be restarted (re-convert the model)" in result.stderr
    status = retained_status(mosquitto.port, "edge/d")
    assert status["state"] == "failed"
    assert status["error"].startswith("model output refused: the model output class index")


def test_labels_fewer_than_the_classes_are_refused_at_conversion(tmp_path, edge):
    exported = _ultralytics_export(tmp_path / "yolo26.onnx")
    assert_refused(edge("convert", exported, "-o", tmp_path / "a.onnx", "--labels", "a,b"),
                   "2 labels were given but the model's metadata names 3 classes (person, car, "
                   "dog); pass 3 labels, or leave --labels out to use those")
    torch.manual_seed(0)
    network = TinyEndToEnd(3)
    with torch.no_grad():
        network.detector.body[-1].bias[4 + 2] += 3  # the third class shows
    plain = export_onnx(network, tmp_path / "plain.onnx", SIZE, SIZE)
    for extra in ((), ("--head", "end_to_end")):
        assert_refused(edge("convert", plain, "-o", tmp_path / "b.onnx", "--labels", "a,b",
                            *extra),
                       "output output0 holds class index 2, so the model has at least 3 "
                       "classes, but 2 labels were given; pass --labels with one name for each")
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "b.onnx").exists()


def test_final_detections_without_labels_ask_for_them(tmp_path, edge):
    plain = _ultralytics_export(tmp_path / "plain.onnx", metadata=False)
    assert_refused(edge("convert", plain, "-o", tmp_path / "b.onnx"),
                   "holds final detections (end_to_end: rows of x1 y1 x2 y2 score class, by "
                   "score), whose class count is not in its shape: pass --labels")


def test_an_nms_iou_given_to_convert_is_said_to_have_no_effect(tmp_path, edge):
    result = edge("convert", _ultralytics_export(tmp_path / "yolo26.onnx"), "-o",
                  tmp_path / "a.onnx", "--iou-threshold", "0.6")
    assert result.returncode == 0, result.stderr
    assert "note: --iou-threshold has no effect on this model: its output is final detections" \
        in result.stdout


def test_eval_ending_on_a_model_error_exits_2_every_time(tmp_path):
    """The error ended the command while the frame reader was still decoding a JPEG in
    OpenCV: the process aborted ("terminate called without an active exception", exit 134)
    in 5 of 8 runs."""
    import subprocess
    import sys

    import cv2

    from converters.convert import ConvertOptions, convert
    from converters.metadata import onnx_with_spec

    converted = convert(_ultralytics_export(tmp_path / "yolo26.onnx"), ConvertOptions())
    spec = converted.spec.model_copy(update={"labels": ("person",)})
    onnx.save(onnx_with_spec(converted.model, spec), str(tmp_path / "model.onnx"))
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    rng = np.random.default_rng(0)
    for index in range(24):
        cv2.imwrite(str(data / "images" / f"{index:03d}.jpg"),
                    rng.integers(0, 256, (720, 1280, 3), np.uint8))
        (data / "labels" / f"{index:03d}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (data / "data.yaml").write_text("names:\n  0: person\n")
    for _ in range(5):
        result = subprocess.run([sys.executable, "-m", "edge", "eval", str(tmp_path / "model.onnx"),
                                 "--data", str(data)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        assert "class index" in result.stderr


def test_values_that_tell_nothing_are_not_taken_for_final_detections():
    """A two-class [N, A, 4+2] whose scores all saturate to 0 on the first frame is sorted and
    whole-numbered too; rows by score with whole class indices are taken only where scores
    differ."""
    from converters.heads import looks_end_to_end

    saturated = np.zeros((1, 300, 6), np.float32)
    saturated[..., :4] = np.random.default_rng(0).uniform(0, 64, (1, 300, 4))
    assert not looks_end_to_end(saturated)
    rows = _rows()[None]
    assert looks_end_to_end(rows)
    assert not looks_end_to_end(rows[:, ::-1])  # not by descending score


def test_metadata_that_names_too_few_classes_gives_way_to_labels_that_cover_them(tmp_path,
                                                                                  edge):
    """The model writes class 2 but its metadata names two classes: without --labels it is
    refused with that, and --labels with three names (which the metadata's count would refuse)
    is what fixes it."""
    torch.manual_seed(0)
    network = TinyEndToEnd(3)
    with torch.no_grad():
        network.detector.body[-1].bias[4 + 2] += 3  # the third class shows
    source = export_onnx(network, tmp_path / "short.onnx", SIZE, SIZE, {
        "names": "{0: 'person', 1: 'car'}", "imgsz": str([SIZE, SIZE]), "stride": "4",
        "task": "detect", "end2end": "True"})
    assert_refused(edge("convert", source, "-o", tmp_path / "a.onnx"),
                   "output output0 holds class index 2, so the model has at least 3 classes, "
                   "but its metadata names 2; pass --labels with one name for each")
    result = edge("convert", source, "-o", tmp_path / "a.onnx", "--labels", "person,car,dog")
    assert result.returncode == 0, result.stderr
    assert _spec(tmp_path / "a.onnx").labels == ("person", "car", "dog")
