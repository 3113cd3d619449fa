"""`edge convert --resize`: a network trained on stretched, centre-cropped or top-left
letterboxed images gets its input made the same way on the device, in calibration and in
evaluation (all three take the model's letterboxer from its spec)."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from calibration.readers import frames_from
from edge.cli import main
from edge.preprocess import letterboxer_from_spec
from edge.spec import SPEC_KEY, spec_from_model
from tests.calibration.test_readers import write_clip
from tests.converters.cli_results import assert_refused
from tests.converters.tiny_models import TinyClassifier, export_onnx, seeded
from tests.mqtt_watch import Watcher
from tests.test_daemon_mqtt import PREFIX, config_with_camera

SIZE = 32


def _classifier(tmp_path, metadata=None):
    return export_onnx(seeded(TinyClassifier(3)), tmp_path / "cls.onnx", SIZE, SIZE, metadata)


def _spec_json(path) -> dict:
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return json.loads(props[SPEC_KEY])


@pytest.mark.parametrize("resize", ["stretch", "crop", "letterbox-top-left", "text-line"])
def test_the_resize_given_is_recorded_and_shown(tmp_path, edge, resize):
    out = tmp_path / "cls.edge.onnx"
    result = edge("convert", _classifier(tmp_path), "-o", out, "--labels", "a,b,c",
                  "--resize", resize)
    assert result.returncode == 0, result.stderr
    assert f"frames by {resize}" in result.stdout
    assert spec_from_model(onnx.load(str(out)), str(out)).input.resize == resize
    assert f"frames by {resize}" in edge("inspect", out).stdout


def test_a_text_line_resize_into_an_input_no_wider_than_high_is_noted(tmp_path, edge):
    """A user check: `--input-size 224 --resize text-line` on PaddleOCR's direction classifier
    (its package uses 48x192; the ONNX input's height and width are dynamic) was converted
    without a word, the parity check comparing the same wrong size on both sides."""
    result = edge("convert", _classifier(tmp_path), "-o", tmp_path / "sq.onnx", "--labels",
                  "a,b,c", "--resize", "text-line")
    assert result.returncode == 0, result.stderr
    assert (f"note: --resize text-line into a {SIZE}x{SIZE} input (HxW), no wider than high: "
            "PaddleOCR's text-line models take wide inputs (48x192 for its direction "
            "classifiers") in result.stdout
    assert "pass that as --input-size" in result.stdout
    wide = export_onnx(seeded(TinyClassifier(3)), tmp_path / "wide.onnx", 16, 64)
    result = edge("convert", wide, "-o", tmp_path / "w.onnx", "--labels", "a,b,c", "--resize",
                  "text-line")
    assert result.returncode == 0 and "no wider than high" not in result.stdout


def test_the_default_letterbox_is_left_out_of_the_spec_for_older_readers(tmp_path, edge):
    out = tmp_path / "cls.edge.onnx"
    assert edge("convert", _classifier(tmp_path), "-o", out, "--labels", "a,b,c").returncode == 0
    assert "resize" not in _spec_json(out)["input"]
    assert spec_from_model(onnx.load(str(out)), str(out)).input.resize == "letterbox"


def test_an_ultralytics_classifier_is_made_as_its_predictor_does(tmp_path, edge):
    """Centre-cropped, and resampled by Pillow's bilinear filter: Ultralytics' classify
    predictor resizes PIL images with torchvision (`tests/edge/test_pil_resampling.py`)."""
    source = _classifier(tmp_path, {"names": "{0: 'a', 1: 'b', 2: 'c'}", "imgsz": "[32, 32]",
                                    "stride": "1", "task": "classify"})
    out = tmp_path / "cls.edge.onnx"
    result = edge("convert", source, "-o", out)
    assert result.returncode == 0, result.stderr
    made = spec_from_model(onnx.load(str(out)), str(out)).input
    assert (made.resize, made.interpolation) == ("crop", "pil-bilinear")
    assert ("frames are made into the input by crop, pil-bilinear resampled, as Ultralytics' "
            "classify predictor does") in result.stdout
    assert "as --interpolation asks" not in result.stdout
    plain = tmp_path / "plain.edge.onnx"
    for other in ("bilinear", "pil-bicubic"):
        result = edge("convert", source, "-o", plain, "--interpolation", other)
        assert result.returncode == 0, result.stderr
        assert ("frames are made into the input by crop, as Ultralytics' classify predictor "
                "does (the frame's centre, its shorter side to the input's, resized by Pillow's "
                f"bilinear filter); resampled {other} as --interpolation asks, not as the "
                "predictor's resize") in result.stdout
    whole = tmp_path / "whole.edge.onnx"
    result = edge("convert", source, "-o", whole, "--resize", "letterbox",
                  "--interpolation", "bilinear")
    assert result.returncode == 0, result.stderr
    made = spec_from_model(onnx.load(str(whole)), str(whole)).input
    assert (made.resize, made.interpolation) == ("letterbox", "bilinear")
    assert "classify predictor" not in result.stdout


@pytest.mark.parametrize(("option", "value", "choices"), [
    ("--resize", "pad", "'letterbox', 'letterbox-top-left', 'stretch', 'crop', 'text-line'"),
    ("--interpolation", "cubic",
     "'bilinear', 'area', 'pil-bilinear', 'pil-bicubic', 'pil-lanczos'"),
])
def test_an_unknown_resize_or_interpolation_is_refused_with_the_choices(tmp_path, capsys,
                                                                        option, value, choices):
    with pytest.raises(SystemExit) as stopped:
        main(["convert", str(_classifier(tmp_path)), "-o", str(tmp_path / "x.onnx"),
              option, value])
    assert stopped.value.code == 2
    assert (f"argument {option}: invalid choice: '{value}' (choose from {choices})"
            in capsys.readouterr().err)
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("resize", ["stretch", "crop"])
def test_calibration_frames_are_made_as_the_spec_says(tmp_path, edge, resize):
    out = tmp_path / "cls.edge.onnx"
    edge("convert", _classifier(tmp_path), "-o", out, "--labels", "a,b,c", "--resize", resize)
    spec = spec_from_model(onnx.load(str(out)), str(out))
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (48, 96, 3), np.uint8) for _ in range(3)]
    for i, image in enumerate(images):
        cv2.imwrite(str(tmp_path / f"{i}.png"), image)
    inputs = [x[spec.input.name][0] for x in frames_from(tmp_path, min_images=1).inputs(spec)]
    region = images[0] if resize == "stretch" else images[0][:, 24:72]  # the centre 48x48
    expected = cv2.resize(np.ascontiguousarray(region), (SIZE, SIZE),
                          interpolation=cv2.INTER_LINEAR)  # BGR in: the swap is in the graph
    np.testing.assert_array_equal(inputs[0], expected)
    buffer = np.zeros((1, SIZE, SIZE, 3), np.uint8)
    letterboxer_from_spec(spec)(images[0], buffer)  # the device's: the same pixels
    np.testing.assert_array_equal(buffer[0], expected)


def _paddle_text_line(image: np.ndarray, height: int, width: int, pad: int) -> np.ndarray:
    """PaddleOCR's `resize_norm_img` (text-line classifiers and recognisers) before its
    normalisation, written out: the height to the input's, the width in proportion rounded up
    (at most the input's), OpenCV's bilinear resize, padded on the right."""
    ratio = image.shape[1] / float(image.shape[0])
    resized_width = width if math.ceil(height * ratio) > width else math.ceil(height * ratio)
    made = np.full((height, width, 3), pad, np.uint8)
    made[:, :resized_width] = cv2.resize(image, (resized_width, height))
    return made


def test_text_line_frames_are_made_as_paddleocr_makes_them(tmp_path, edge, caplog):
    """Short lines keep their aspect with a bar on the right, long ones are squeezed: on the
    device, in calibration and in `edge eval`, pixel for pixel; text crops smaller than the
    input are enlarged to its height as PaddleOCR enlarges them, not skipped as thumbnails.
    (`stretch` gave a PP-OCRv4 text-direction classifier 87% top-1 agreement with its package
    on 30 strips; `text-line` 100%, probabilities within 0.004: the pad 128 for its 127.5.)"""
    height, width = 16, 64
    source = export_onnx(seeded(TinyClassifier(3)), tmp_path / "lines.onnx", height, width)
    out = tmp_path / "lines.edge.onnx"
    result = edge("convert", source, "-o", out, "--labels", "a,b,c", "--resize", "text-line",
                  "--pad-value", "128")
    assert result.returncode == 0, result.stderr
    assert "frames by text-line padded with 128" in result.stdout
    spec = spec_from_model(onnx.load(str(out)), str(out))
    rng = np.random.default_rng(6)
    lines = tmp_path / "lines"
    lines.mkdir()
    images = [rng.integers(0, 256, shape, np.uint8) for shape in
              ((10, 23, 3), (30, 40, 3), (16, 64, 3), (12, 200, 3), (50, 17, 3), (9, 35, 3))]
    for i, image in enumerate(images):
        cv2.imwrite(str(lines / f"{i}.png"), image)
    expected = [_paddle_text_line(image, height, width, 128) for image in images]
    buffer = np.zeros((1, height, width, 3), np.uint8)
    for image, wanted in zip(images, expected, strict=True):
        letterboxer_from_spec(spec)(image, buffer)
        np.testing.assert_array_equal(buffer[0], wanted)
    made = [x[spec.input.name][0] for x in frames_from(lines, min_images=1).inputs(spec)]
    assert len(made) == len(images)  # none skipped as smaller than the input
    for inputs in made:
        assert any(np.array_equal(inputs, wanted) for wanted in expected)
    with caplog.at_level(logging.INFO):
        calibrated = edge("calibrate", out, "--images", lines, "-o", tmp_path / "q.onnx",
                          "--method", "minmax", "--min-images", "4")
    assert calibrated.returncode == 0, calibrated.stderr
    assert "calibrating on 6 frames" in caplog.text and "smaller than" not in caplog.text
    # the bar defaults to the network's normalised 0, as PaddleOCR pads its normalised lines
    for mean, level in (("0.5", 128), ("0.2,0.3,0.4", 77), ("0", 0)):
        result = edge("convert", source, "-o", tmp_path / "d.onnx", "--labels", "a,b,c",
                      "--resize", "text-line", "--mean", mean)
        assert (f"note: the text-line bar is padded with {level}, the network's normalised 0 "
                "(255 x its --mean), as PaddleOCR pads its lines") in result.stdout
        assert _spec_json(tmp_path / "d.onnx")["input"]["pad_value"] == level
    assert_refused(edge("convert", source, "-o", tmp_path / "x.onnx", "--labels", "a,b,c",
                        "--resize", "text-line", "--crop-fraction", "0.9"),
                   "--crop-fraction 0.9 needs --resize stretch or crop; the frames are made by "
                   "text-line, which keeps all of the frame")


def test_text_lines_mostly_enlarged_past_twice_are_warned_about(tmp_path, edge, caplog):
    """Text crops are kept however small (PaddleOCR enlarges them to its lines), but a folder
    of mostly tiny images (icons, another model's thumbnails) was calibrated in silence."""
    source = export_onnx(seeded(TinyClassifier(3)), tmp_path / "lines.onnx", 16, 64)
    out = tmp_path / "lines.edge.onnx"
    edge("convert", source, "-o", out, "--labels", "a,b,c", "--resize", "text-line")
    rng = np.random.default_rng(8)
    for count, folder in ((6, "tiny"), (3, "some")):
        (tmp_path / folder).mkdir()
        for i in range(8):
            shape = (7, 30, 3) if i < count else (14, 60, 3)  # 7 px: enlarged 2.3x to 16
            cv2.imwrite(str(tmp_path / folder / f"{i}.png"), rng.integers(0, 256, shape, np.uint8))
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            result = edge("calibrate", out, "--images", tmp_path / folder, "-o",
                          tmp_path / f"{folder}.q.onnx", "--method", "minmax", "--min-images",
                          "4")
        assert result.returncode == 0, result.stderr
        warned = (f"{count} of the 8 images in {tmp_path / folder} are under 8 px high, so "
                  "text-line enlarges them more than 2x to the model's 16 px lines")
        assert (warned in caplog.text) == (folder == "tiny"), caplog.text


def test_images_a_filling_resize_would_upscale_are_judged_as_such(tmp_path, edge):
    """Tall narrow images are no smaller than a letterbox's input, but `crop` fills the input
    with their width: 4x upscaled (a stretch shrinks their height: no thumbnail)."""
    images = tmp_path / "tall"
    images.mkdir()
    rng = np.random.default_rng(4)
    for i in range(10):
        cv2.imwrite(str(images / f"{i}.png"), rng.integers(0, 256, (64, 8, 3), np.uint8))
    for resize in ("crop", "stretch", "letterbox"):
        out = tmp_path / f"{resize}.onnx"
        edge("convert", _classifier(tmp_path), "-o", out, "--labels", "a,b,c", "--resize",
             resize)
        result = edge("calibrate", out, "--images", images, "-o", tmp_path / f"{resize}.q.onnx",
                      "--method", "minmax")
        if resize != "crop":
            assert result.returncode == 0, result.stderr
        else:
            assert_refused(result, "all 10 images", "smaller than the model input 32x32 "
                           "(width x height) in either side (largest 8x64)")
    # with a crop fraction, what the input takes is larger than the input: said so
    fraction = tmp_path / "fraction.onnx"
    edge("convert", _classifier(tmp_path), "-o", fraction, "--labels", "a,b,c", "--resize",
         "crop", "--crop-fraction", "0.8")
    squares = tmp_path / "squares"
    squares.mkdir()
    for i in range(10):
        cv2.imwrite(str(squares / f"{i}.png"), rng.integers(0, 256, (36, 36, 3), np.uint8))
    assert_refused(edge("calibrate", fraction, "--images", squares, "-o", tmp_path / "f.onnx"),
                   "all 10 images", "are smaller than 40x40 (width x height), what the model "
                   "input 32x32 takes by crop of the central 0.8 in either side (largest 36x36)",
                   "Calibrate on frames from the camera (at least 40x40)")


def test_a_crop_fraction_is_recorded_shown_and_refused_with_a_letterbox(tmp_path, edge):
    out = tmp_path / "imagenet.onnx"
    result = edge("convert", _classifier(tmp_path), "-o", out, "--labels", "a,b,c",
                  "--resize", "crop", "--crop-fraction", "0.875")
    assert result.returncode == 0, result.stderr
    assert "frames by crop of the central 0.875" in result.stdout
    assert _spec_json(out)["input"]["crop_fraction"] == 0.875
    assert "frames by crop of the central 0.875" in edge("inspect", out).stdout
    plain = tmp_path / "plain.onnx"
    edge("convert", _classifier(tmp_path), "-o", plain, "--labels", "a,b,c", "--resize", "crop")
    assert "crop_fraction" not in _spec_json(plain)["input"]  # the default: older readers
    assert_refused(edge("convert", _classifier(tmp_path), "-o", tmp_path / "x.onnx",
                        "--labels", "a,b,c", "--crop-fraction", "0.875"),
                   "--crop-fraction 0.875 needs --resize stretch or crop; the frames are made "
                   "by letterbox, which keeps all of the frame")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("value", ["0", "1e-9", "0.4", "1.5", "-0.5", "nan", "x", "87.5"])
def test_a_crop_fraction_outside_half_to_all_is_refused(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as stopped:
        main(["convert", str(_classifier(tmp_path)), "-o", str(tmp_path / "x.onnx"),
              "--resize", "crop", "--crop-fraction", value])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"'{value}' must be a fraction from 0.5 to 1, e.g. 0.875 for Resize(256) + " \
           "CenterCrop(224)" in err
    assert ("(a fraction: 87.5% is 0.875)" in err) == (value == "87.5")


@pytest.mark.parametrize("resize", ["letterbox", "letterbox-top-left"])
def test_a_pad_value_fills_the_bars_everywhere_the_input_is_made(tmp_path, edge, resize):
    """A network trained on white-padded letterboxes (occular-deskew's orientation net) sees
    white bars in calibration, in `edge eval` and on the device, not Ultralytics' grey."""
    out = tmp_path / "white.onnx"
    result = edge("convert", _classifier(tmp_path), "-o", out, "--labels", "a,b,c",
                  "--resize", resize, "--pad-value", "255")
    assert result.returncode == 0, result.stderr
    assert f"frames by {resize} padded with 255" in result.stdout
    assert f"frames by {resize} padded with 255" in edge("inspect", out).stdout
    summary = json.loads(edge("convert", _classifier(tmp_path), "-o", tmp_path / "j.onnx",
                              "--labels", "a,b,c", "--resize", resize, "--pad-value", "255",
                              "--json").stdout.splitlines()[-1])
    assert (summary["resize"], summary["crop_fraction"], summary["pad_value"]) == (
        resize, 1.0, 255)
    spec = spec_from_model(onnx.load(str(out)), str(out))
    assert spec.input.pad_value == 255
    image = np.random.default_rng(4).integers(0, 200, (40, 80, 3), np.uint8)  # no 255 inside
    (tmp_path / "frames").mkdir()
    cv2.imwrite(str(tmp_path / "frames" / "wide.png"), image)
    (calibration,) = [x[spec.input.name][0] for x in frames_from(tmp_path / "frames",
                                                                 min_images=1).inputs(spec)]
    buffer = np.zeros((1, SIZE, SIZE, 3), np.uint8)
    letterboxer_from_spec(spec)(image, buffer)
    for made in (calibration, buffer[0]):  # 32x16 of picture, 16 rows of bars
        bars = made[:8] if resize == "letterbox" else made[16:]
        assert (bars == 255).all()
        picture = made[8:24] if resize == "letterbox" else made[:16]
        assert picture.max() < 255
    default = tmp_path / "grey.onnx"
    edge("convert", _classifier(tmp_path), "-o", default, "--labels", "a,b,c")
    assert spec_from_model(onnx.load(str(default)), str(default)).input.pad_value == 114
    assert "padded" not in edge("inspect", default).stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--pad-value", "256"], "'256' must be a pixel level, a whole number from 0 to 255"),
    (["--pad-value", "-1"], "'-1' must be a pixel level"),
    (["--pad-value", "0.5"], "'0.5' must be a pixel level, a whole number from 0 to 255 (114: "
                             "Ultralytics' grey); in 0..1 units, 0.5 is level 128"),
    (["--pad-value", "127.5"], "'127.5' must be a pixel level, a whole number from 0 to 255 "
                               "(114: Ultralytics' grey); the bars are uint8 levels in the frame "
                               "the model reads: pass 128 for 127.5"),
    (["--pad-value", "white"], "'white' must be a pixel level"),
])
def test_a_pad_value_that_is_no_pixel_level_is_refused(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as stopped:
        main(["convert", str(_classifier(tmp_path)), "-o", str(tmp_path / "x.onnx"), *args])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_a_pad_value_without_a_letterbox_is_refused(tmp_path, edge):
    assert_refused(edge("convert", _classifier(tmp_path), "-o", tmp_path / "x.onnx",
                        "--labels", "a,b,c", "--resize", "stretch", "--pad-value", "0"),
                   "--pad-value 0 needs bars (--resize letterbox, letterbox-top-left or "
                   "text-line); stretch fills the whole input, so there are no bars to pad")
    assert not (tmp_path / "x.onnx").exists()


def colour_mean_classifier(path):
    """A 'classifier' whose scores are each colour's mean over its input (red, green, blue in
    network order): which colour fills what the model sees wins."""
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["scores"])], "colour_mean",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.slow
@pytest.mark.parametrize(("resize", "label"), [("crop", "red"), ("letterbox", "blue"),
                                                ("stretch", "blue")])
def test_edge_run_makes_the_input_as_the_spec_says(tmp_path, edge, mosquitto, resize, label):
    """16:9 frames with a red band in the middle and blue sides: a centre crop sees mostly
    red, the whole frame is mostly blue. The published class says which the device saw."""
    model = tmp_path / "colour.edge.onnx"
    result = edge("convert", colour_mean_classifier(tmp_path / "colour.onnx"), "-o", model,
                  "--labels", "red,green,blue", "--resize", resize)
    assert result.returncode == 0, result.stderr
    frame = np.zeros((360, 640, 3), np.uint8)
    frame[:] = (255, 0, 0)  # BGR blue
    frame[:, 220:420] = (0, 0, 255)  # a red band, 200 of the centre square's 360 px
    clip = write_clip(tmp_path / "bands.avi", [frame] * 10)
    assert top_labels_published(tmp_path, model, mosquitto.port, clip) == {label}


def top_labels_published(tmp_path, model, port: int, clip) -> set[str]:
    """The highest-scoring label of each detections message `edge run` publishes for `model`
    on the video `clip` (through the broker on `port`): for a colour-mean classifier, the
    colour that fills what the device made of the frames."""
    config = config_with_camera(tmp_path, model, port, f"file://{clip}?fps=0")
    with Watcher(port, f"{PREFIX}/gate/detections") as watcher:
        run = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config)],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        watcher.wait_for(lambda: len(watcher.messages) > 0, 10, "detections")
    return {max(m.json()["detections"], key=lambda d: d["score"])["label"]
            for m in watcher.messages}
