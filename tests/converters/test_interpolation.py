"""`edge convert --interpolation`: a network trained on antialiased resizes (PIL, torchvision,
timm, Ultralytics classify) gets its input resampled by Pillow's filter, or by pixel area where
frames shrink, on the device, in calibration and in evaluation (all take the model's
letterboxer from its spec)."""

from __future__ import annotations

import json
import math
import sys

import cv2
import numpy as np
import onnx
import pytest
from PIL import Image

from calibration.readers import frames_from
from edge.errors import ModelError
from edge.preprocess import Letterboxer, letterboxer_from_spec
from edge.spec import SPEC_KEY, ModelSpec, spec_from_model, spec_from_onnx_file
from tests.converters.test_resize_modes import colour_mean_classifier, top_labels_published
from tests.converters.tiny_models import TinyClassifier, export_onnx, seeded

SIZE = 32


def _classifier(tmp_path, metadata=None):
    return export_onnx(seeded(TinyClassifier(3)), tmp_path / "cls.onnx", SIZE, SIZE, metadata)


def _spec(path) -> ModelSpec:
    return spec_from_model(onnx.load(str(path)), str(path))


def _stripes(height: int, width: int) -> np.ndarray:
    """One white column in three, the rest black: detail finer than a 6x shrink can keep,
    whose mean level (85) is what an antialiased resize leaves."""
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:, ::3] = 255
    return frame


def test_area_averages_what_a_shrink_drops_and_enlarges_bilinear():
    """Shrunk 6x, the stripes become the grey they average to with `area`; bilinear blends
    the two pixels nearest each sample, one black and one white, and makes them brighter
    than they are (aliasing); the same where only one axis shrinks. Enlarging, `area`
    resamples as bilinear does (OpenCV's INTER_AREA would be close to nearest-neighbour
    there)."""
    frame = _stripes(192, 192)
    area, bilinear = (np.zeros((1, SIZE, SIZE, 3), np.uint8) for _ in range(2))
    Letterboxer(interpolation="area", resize="stretch")(frame, area)
    Letterboxer(resize="stretch")(frame, bilinear)
    assert set(np.unique(area)) == {85}  # 6 pixels, 2 white
    assert set(np.unique(bilinear)) == {128}
    # a wide strip into a square: its width shrinks 6x (averaged), its height grows 2x
    strip, grown = _stripes(16, 6 * SIZE), np.zeros((1, SIZE, SIZE, 3), np.uint8)
    Letterboxer(interpolation="area", resize="stretch")(strip, grown)
    assert set(np.unique(grown)) == {85}
    Letterboxer(resize="stretch")(strip, grown)
    assert set(np.unique(grown)) <= {127, 128}
    small = np.random.default_rng(1).integers(0, 256, (16, 16, 3), np.uint8)
    grown = np.zeros((1, SIZE, SIZE, 3), np.uint8)
    Letterboxer(interpolation="area", resize="stretch")(small, grown)
    np.testing.assert_array_equal(grown[0], cv2.resize(small, (SIZE, SIZE),
                                                       interpolation=cv2.INTER_LINEAR))


def _pil(frame: np.ndarray, size: tuple[int, int], name: str) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).resize(size, getattr(Image.Resampling, name)))


def _resize_then_centre_crop(frame: np.ndarray, short_side: int, crop: int,
                             name: str) -> np.ndarray:
    """torchvision's `Resize(short_side)` then `CenterCrop(crop)` of a PIL image, written out:
    the shorter side to `short_side`, the longer in proportion (truncated), then the centre cut
    at offsets rounded half to even (Python's `round`, as torchvision's)."""
    height, width = frame.shape[:2]
    if width <= height:
        size = (short_side, int(short_side * height / width))
    else:
        size = (int(short_side * width / height), short_side)
    resized = _pil(frame, size, name)
    top, left = round((size[1] - crop) / 2.0), round((size[0] - crop) / 2.0)
    return resized[top:top + crop, left:left + crop]


@pytest.mark.parametrize("name", ["BILINEAR", "BICUBIC", "LANCZOS"])
def test_pil_filters_resample_as_pillow_and_torchvision_do(name):
    """A letterbox and a stretch equal Pillow's resize of the frame (BGR or RGB alike: every
    channel is filtered the same); a centre crop with a crop fraction equals torchvision's
    Resize then CenterCrop of the whole frame, pixel for pixel, for landscape and portrait
    frames: the pixels around the crop take part, as they do in the resize the crop is cut
    from. Noise makes bicubic and Lanczos overshoot, which Pillow clips between its two
    passes: resizing the crop alone with Pillow's `box=` moved values by up to 21 levels."""
    interpolation = f"pil-{name.lower()}"
    rng = np.random.default_rng(7)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (270, 480, 3), np.uint8), (5, 5), 0)
    boxed = np.zeros((1, 64, 64, 3), np.uint8)
    geometry = Letterboxer(pad_value=0, interpolation=interpolation)(frame, boxed)
    assert (geometry.resized_width, geometry.resized_height) == (64, 36)
    np.testing.assert_array_equal(boxed[0, 14:50], _pil(frame, (64, 36), name))
    assert not boxed[0, :14].any() and not boxed[0, 50:].any()  # the bars
    stretched = np.zeros((1, 40, 56, 3), np.uint8)
    Letterboxer(interpolation=interpolation, resize="stretch")(frame, stretched)
    np.testing.assert_array_equal(stretched[0], _pil(frame, (56, 40), name))
    # Resize((45, 64)) then CenterCrop((40, 56)): 64 = floor(56 / 0.875), 45 = floor(40 / 0.875)
    Letterboxer(interpolation=interpolation, resize="stretch", crop_fraction=0.875)(
        frame, stretched)
    np.testing.assert_array_equal(stretched[0], _pil(frame, (64, 45), name)[2:42, 4:60])
    noise = rng.integers(0, 256, (300, 256, 3), np.uint8)
    for source in (frame, np.ascontiguousarray(frame.transpose(1, 0, 2)), noise):
        for fraction in (0.875, 1.0):
            cropped = np.zeros((1, 56, 56, 3), np.uint8)
            geometry = Letterboxer(interpolation=interpolation, resize="crop",
                                   crop_fraction=fraction)(source, cropped)
            expected = _resize_then_centre_crop(source, math.floor(56 / fraction), 56, name)
            np.testing.assert_array_equal(cropped[0], expected)
            # the centre cut first and resized alone: its edges miss the pixels around it
            alone = np.ascontiguousarray(geometry.source_region(source))
            assert np.abs(_pil(alone, (56, 56), name).astype(int) - expected).max() > 1


def test_a_pil_stretch_of_an_odd_size_is_pillow_s_plain_resize():
    """1001 / 227 * 227 is 1001.0000000000001: a stretch is Pillow's resize of the whole
    frame, no box whose float edge could pass the image's (which Pillow refuses)."""
    frame = np.random.default_rng(3).integers(0, 256, (1001, 1001, 3), np.uint8)
    out = np.zeros((1, 227, 227, 3), np.uint8)
    Letterboxer(interpolation="pil-bilinear", resize="stretch")(frame, out)
    np.testing.assert_array_equal(out[0], _pil(frame, (227, 227), "BILINEAR"))


@pytest.mark.parametrize(("interpolation", "resampled"), [
    ("area", lambda frame: cv2.resize(frame, (SIZE, SIZE), interpolation=cv2.INTER_AREA)),
    ("pil-bicubic", lambda frame: _pil(frame, (SIZE, SIZE), "BICUBIC")),
])
def test_the_interpolation_is_recorded_shown_and_used_wherever_the_input_is_made(
        tmp_path, edge, interpolation, resampled):
    out = tmp_path / "resampled.onnx"
    result = edge("convert", _classifier(tmp_path), "-o", out, "--labels", "a,b,c",
                  "--resize", "stretch", "--interpolation", interpolation)
    assert result.returncode == 0, result.stderr
    assert f"frames by stretch, {interpolation} resampled" in result.stdout
    assert "--interpolation" not in result.stdout  # given: not assumed
    assert f"frames by stretch, {interpolation} resampled" in edge("inspect", out).stdout
    summary = json.loads(edge("convert", _classifier(tmp_path), "-o", tmp_path / "j.onnx",
                              "--labels", "a,b,c", "--interpolation", interpolation,
                              "--json").stdout.splitlines()[-1])
    assert summary["interpolation"] == interpolation
    spec = _spec(out)
    assert spec.input.interpolation == interpolation
    assert spec_from_onnx_file(str(out)) == spec  # a script's str path reads it too
    frame = np.random.default_rng(4).integers(0, 256, (96, 160, 3), np.uint8)
    (tmp_path / "frames").mkdir()
    cv2.imwrite(str(tmp_path / "frames" / "wide.png"), frame)
    (calibration,) = [x[spec.input.name][0] for x in frames_from(tmp_path / "frames",
                                                                 min_images=1).inputs(spec)]
    device = np.zeros((1, SIZE, SIZE, 3), np.uint8)
    letterboxer_from_spec(spec)(frame, device)
    expected = resampled(frame)
    np.testing.assert_array_equal(calibration, expected)
    np.testing.assert_array_equal(device[0], expected)
    assert not np.array_equal(expected, cv2.resize(frame, (SIZE, SIZE),
                                                   interpolation=cv2.INTER_LINEAR))


def test_bilinear_stays_the_default_and_out_of_the_spec_for_older_readers(tmp_path, edge):
    out = tmp_path / "cls.edge.onnx"
    result = edge("convert", _classifier(tmp_path), "-o", out, "--labels", "a,b,c")
    assert result.returncode == 0, result.stderr
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert "interpolation" not in json.loads(props[SPEC_KEY])["input"]
    assert _spec(out).input.interpolation == "bilinear"
    assert "resampled" not in edge("inspect", out).stdout
    # a classifier's resampling is assumed, and the note says how to change it
    assert ("frames resampled bilinear without antialiasing (--interpolation)" in result.stdout
            and "trained on PIL images, as torchvision and timm load them: --interpolation "
                "pil-bilinear, or pil-bicubic for timm's defaults" in result.stdout)


def test_a_spec_with_an_unknown_interpolation_is_refused_in_one_line():
    spec = {"spec_version": 1, "task": "classify", "labels": ["a", "b"], "head": "logits",
            "output": "out",
            "input": {"name": "images", "width": 32, "height": 32, "interpolation": "lanczos"}}
    with pytest.raises(ModelError) as refused:
        ModelSpec.from_json(json.dumps(spec), "m.onnx")
    text = str(refused.value)
    assert text == ("m.onnx: invalid model spec: input.interpolation: Input should be "
                    "'bilinear', 'area', 'pil-bilinear', 'pil-bicubic' or 'pil-lanczos'; the "
                    "model may come from a newer edge: upgrade edge, or re-convert the model "
                    "with this version's `edge convert`")


@pytest.mark.slow
@pytest.mark.parametrize(("interpolation", "label"), [
    ("area", "red"), ("pil-bilinear", "red"), ("bilinear", "blue")])
def test_edge_run_resamples_as_the_spec_says(tmp_path, edge, mosquitto, interpolation, label):
    """Frames of red 105 and blue stripes (one column in three at 255), shrunk 6x by a
    classifier whose scores are its input's colour means: area resampling keeps the blue's
    mean (85) under the red, as Pillow's bilinear filter does (its triangle spans the
    stripes), OpenCV's bilinear blends stripe and gap into 128 and blue wins. The
    published class says which the device did. The clip is lossless (FFV1): a JPEG would blur
    the stripes."""
    model = tmp_path / "colour.edge.onnx"
    result = edge("convert", colour_mean_classifier(tmp_path / "colour.onnx"), "-o", model,
                  "--labels", "red,green,blue", "--resize", "stretch",
                  "--interpolation", interpolation)
    assert result.returncode == 0, result.stderr
    frame = np.zeros((6 * SIZE, 6 * SIZE, 3), np.uint8)
    frame[:, ::3, 0] = 255  # BGR: blue stripes
    frame[..., 2] = 105  # red everywhere
    clip = tmp_path / "stripes.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"FFV1"), 10, frame.shape[1::-1])
    for _ in range(10):
        writer.write(frame)
    writer.release()
    assert top_labels_published(tmp_path, model, mosquitto.port, clip) == {label}


def test_a_spec_from_a_newer_edge_says_to_upgrade():
    """A field this version does not know (as `interpolation` was to the version before it)
    cannot be mended by re-converting with this version alone."""
    spec = {"spec_version": 1, "task": "classify", "labels": ["a", "b"], "head": "logits",
            "output": "out", "input": {"name": "images", "width": 32, "height": 32,
                                       "sharpen": 0.5}}
    with pytest.raises(ModelError) as refused:
        ModelSpec.from_json(json.dumps(spec), "m.onnx")
    assert str(refused.value) == (
        "m.onnx: invalid model spec: fields this version does not know: input.sharpen; the "
        "model may come from a newer edge: upgrade edge, or re-convert the model with this "
        "version's `edge convert`")
    spec["input"]["pad_value"] = 300  # with a problem this version does know
    with pytest.raises(ModelError) as refused:
        ModelSpec.from_json(json.dumps(spec), "m.onnx")
    assert str(refused.value).startswith(
        "m.onnx: invalid model spec: input.pad_value: Input should be less than or equal to "
        "255; fields this version does not know: input.sharpen; the model may come from")


def test_a_pil_model_without_pillow_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)  # as if not installed: its import fails
    with pytest.raises(ModelError, match=r"the model resizes frames with Pillow \(pil-bicubic, "
                       r"as it was trained\), and Pillow cannot be imported .*; install it: "
                       r".* -m pip install 'Pillow>=9.1'"):
        Letterboxer(interpolation="pil-bicubic")
