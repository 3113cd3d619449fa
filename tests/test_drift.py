"""Drift: divergences, reference profiles, and the monitor on the synthetic scene."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.drift_reference import drift_reference_from_images
from edge.config import DriftConfig
from edge.drift import (
    DriftMonitor,
    DriftReference,
    DriftStats,
    compare,
    default_reference_path,
    kl,
    psi,
    reference_for_model,
    reference_from_config,
    refuse_another_models_profile,
)
from edge.errors import InputError, ModelError, SourceError
from edge.postprocess import decoder_from_spec
from edge.preprocess import letterboxer_from_spec
from edge.runners.onnxruntime import OrtRunner
from edge.sources.synthetic import SyntheticSource
from edge.sources.uri import SourceUri
from edge.synthetic.scene import ShapeScene
from edge.synthetic.shift import SceneShift

FPS = 15.0


def loop_psi(a: list[int], b: list[int]) -> float:
    """PSI written out term by term, half-count smoothing."""
    pa = [(x + 0.5) / (sum(a) + 0.5 * len(a)) for x in a]
    pb = [(x + 0.5) / (sum(b) + 0.5 * len(b)) for x in b]
    return sum((q - p) * math.log(q / p) for p, q in zip(pa, pb, strict=True))


@pytest.mark.parametrize(("a", "b"), [
    ([10, 20, 30, 40], [10, 20, 30, 40]),
    ([10, 20, 30, 40], [40, 30, 20, 10]),
    ([100, 0, 0, 0], [0, 0, 0, 100]),
    ([5, 5, 5, 5], [50, 50, 50, 50]),
])
def test_psi_and_kl_match_the_written_out_formulas(a, b):
    ref, win = np.array(a, np.int64), np.array(b, np.int64)
    assert psi(ref, win) == pytest.approx(loop_psi(a, b))
    pa = (ref + 0.5) / (ref + 0.5).sum()
    pb = (win + 0.5) / (win + 0.5).sum()
    assert kl(ref, win) == pytest.approx(float((pb * np.log(pb / pa)).sum()))
    assert psi(ref, win) >= 0


def scene_images(seed: int, count: int, step: int, shift: str | None = None):
    scene = ShapeScene(seed=seed)
    shifter = SceneShift(shift) if shift else None
    for _ in range(count):
        for _ in range(step - 1):
            scene.next_truth()
        image, _ = scene.next()
        if shifter is not None:
            shifter.apply(image, scene.frame_index)
        yield image


@pytest.fixture(scope="module")
def reference(demo_model: Path) -> DriftReference:
    # The camera's own scene (same seed, so the same background) over ~5 minutes of it.
    return drift_reference_from_images(demo_model, scene_images(1, 300, 15), "scene", threads=1)


def test_reference_round_trips_and_refuses_another_models_profile(tmp_path, demo_model,
                                                                  reference):
    model = tmp_path / "shapes.onnx"
    model.write_bytes(demo_model.read_bytes())
    path = default_reference_path(model)
    assert path.name == "shapes.onnx.drift.json"
    reference.save(path)
    loaded = reference_for_model(path, model)
    assert loaded.stats.to_dict() == reference.stats.to_dict()
    assert loaded.labels == ("circle", "square", "triangle", "star")
    assert loaded.stats.frames == 300 and loaded.stats.count.sum() == 300
    other = tmp_path / "other.onnx"
    other.write_bytes(demo_model.read_bytes() + b"\0")
    with pytest.raises(ModelError, match=r"made with model sha256 .* but .*other\.onnx has sha256"
                                         r".*edge eval"):
        reference_for_model(path, other)


@pytest.mark.parametrize(("text", "expected"), [
    ("not json", r"is not a drift reference profile \(Expecting value.*edge eval .*m\.onnx "
                 r"--data DATA --drift-reference .*m\.onnx\.drift\.json"),
    ('{"v": 7}', r"version 7"),
    # a helper's check: "('list' object has no attribute 'get')" and "('model_sha256')"
    ("[]", r"is not a drift reference profile \(a JSON list, not an object\)"),
    ('{"v": 1, "model_sha256": "x"}',
     r"is not a drift reference profile \(no 'model_name', 'labels', 'stats'\)"),
])
def test_malformed_reference_profiles_are_refused(tmp_path, text, expected):
    path = tmp_path / "m.onnx.drift.json"
    path.write_text(text)
    with pytest.raises(ModelError, match=expected):
        DriftReference.load(path, tmp_path / "m.onnx")
    refuse_another_models_profile(path, tmp_path / "m.onnx")  # so the command it gives works


def test_a_reference_that_is_a_folder_is_named_so(tmp_path):
    with pytest.raises(ModelError, match=r"drift reference .* is a folder; give the profile's "
                                         r"JSON file"):
        DriftReference.load(tmp_path)


def test_a_reference_of_few_frames_is_warned_about(tmp_path, demo_model, caplog):
    """A 5-frame profile was taken without a word (the README asks for hundreds)."""
    model = tmp_path / "m.onnx"
    model.write_bytes(demo_model.read_bytes())
    drift_reference_from_images(demo_model, scene_images(1, 5, 15), "scene",
                                threads=1).save(default_reference_path(model))
    with caplog.at_level(logging.WARNING, logger="edge.drift"):
        assert reference_from_config(DriftConfig(), model) is not None
    assert "profiles 5 frames: a profile of so few reads as drift" in caplog.text


@pytest.mark.parametrize(("change", "expected"), [
    ({"brightness": [-5] * 16}, r"\(brightness holds negative counts\)"),
    ({"frames": 0, "brightness": [0] * 16, "contrast": [0] * 16}, r"\(it profiles 0 frames\)"),
    ({"frames": 301}, r"\(brightness counts 300 frames, not its 301\)"),
])
def test_hand_damaged_reference_counts_are_refused(tmp_path, reference, change, expected):
    """A user check: negative bins (then compared as a flat histogram: a false alert) and a
    profile of 0 frames were taken without a word."""
    path = tmp_path / "m.onnx.drift.json"
    reference.save(path)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "stats": {**data["stats"], **change}}))
    with pytest.raises(ModelError, match=f"is not a drift reference profile {expected}"):
        DriftReference.load(path)


def test_reference_from_config(tmp_path, demo_model):
    model = tmp_path / "m.onnx"
    model.write_bytes(demo_model.read_bytes())
    assert reference_from_config(DriftConfig(), model) is None  # auto, no profile: off
    assert reference_from_config(DriftConfig(enabled="off"), model) is None
    with pytest.raises(ModelError, match=r"m\.onnx\.drift\.json does not exist; write it with"):
        reference_from_config(DriftConfig(enabled="on"), model)
    with pytest.raises(ModelError, match=r"elsewhere\.json does not exist"):
        reference_from_config(DriftConfig(reference=tmp_path / "elsewhere.json"), model)


def test_a_window_under_two_minutes_is_warned_about_at_start(tmp_path, demo_model, reference,
                                                              caplog):
    """30 s windows alerted on the unchanged synthetic scene for minutes (contrast PSI 1.7,
    all classes' scores 0.3) against a reference of 300 frames over 150 s."""
    model = tmp_path / "m.onnx"
    model.write_bytes(demo_model.read_bytes())
    reference.save(default_reference_path(model))
    with caplog.at_level(logging.WARNING, logger="edge.drift"):
        assert reference_from_config(DriftConfig(), model) is not None
        assert reference_from_config(DriftConfig(window_s=120), model) is not None
        assert not caplog.records
    with caplog.at_level(logging.INFO, logger="edge.drift"):  # a user check: not said at all
        reference_from_config(DriftConfig(window_s=120), model)
    assert caplog.records[-1].getMessage() == (
        f"drift: each camera's last 120 s compared with {default_reference_path(model)} (300 "
        "frames of scene) by psi, alert above 0.25")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edge.drift"):
        assert reference_from_config(DriftConfig(window_s=30), model) is not None
    assert [r.getMessage() for r in caplog.records] == [
        "drift.window_s = 30 s: a window this short holds one stretch of the scene (its "
        "light, the few objects then in view) and reads as drift against a reference taken "
        "over minutes with nothing wrong; use 120 s or more (the default is 300)"]


def test_a_window_that_cannot_hold_min_frames_is_said_once(reference, caplog):
    """`min_frames = 100000` with 300 s windows at 15 FPS stayed warming_up for ever, without
    a word."""
    published: list[dict[str, object]] = []
    monitor = DriftMonitor("gate", DriftConfig(window_s=120, min_frames=5000), reference,
                           published.append)
    image = np.full((48, 64, 3), 90, np.uint8)
    with caplog.at_level(logging.WARNING, logger="edge.drift"):
        for index in range(3 * 120 * 10):  # three windows at 10 FPS
            monitor.observe_image(1000.0 + index / 10, image)
    assert {p["state"] for p in published} == {"warming_up"}
    assert [r.getMessage() for r in caplog.records] == [
        "camera gate: drift is not judged: a whole 120 s window held 1200 frames (10.0 FPS), "
        "fewer than drift.min_frames = 5000; lower min_frames or lengthen window_s"]


def test_the_fix_given_for_another_models_profile_is_a_command_that_works(tmp_path,
                                                                          demo_model, reference):
    """A user check: `drift.reference` naming another model's profile was refused at start
    with `edge eval <model> --data DATA --drift-reference <that profile>` as the fix, which
    refuses to replace it. The fix writes the model's own profile, for drift.reference to name
    or be left out for; a profile missing or damaged at a path another model owns is told
    the same."""
    shapes, other = tmp_path / "shapes.onnx", tmp_path / "x.onnx"
    shapes.write_bytes(demo_model.read_bytes())
    other.write_bytes(demo_model.read_bytes() + b"\0")
    profile = default_reference_path(shapes)
    reference.save(profile)
    with pytest.raises(ModelError) as refused:
        reference_for_model(profile, other)
    assert str(refused.value).endswith(
        f"write a new one with `edge eval {other} --data DATA --drift-reference` (it writes "
        f"{default_reference_path(other)}; set drift.reference to that path, or leave it out)")
    refuse_another_models_profile(default_reference_path(other), other)  # the command works
    profile.write_text("damaged")
    with pytest.raises(ModelError, match=r"write one with `edge eval .*x\.onnx --data DATA "
                                         r"--drift-reference` \(it writes .*x\.onnx\.drift"):
        reference_for_model(profile, other)
    with pytest.raises(ModelError, match=r"write it with `edge eval .*x\.onnx --data DATA "
                                         r"--drift-reference` \(it writes"):
        reference_from_config(DriftConfig(enabled="on", reference=tmp_path / "m.onnx"), other)


def test_a_profile_path_of_another_model_is_refused_and_its_profile_kept(tmp_path, demo_model,
                                                                        reference):
    """`--drift-reference shapes.onnx.drift.json` while profiling x.onnx replaced shapes.onnx's
    profile; the daemon then refused to start shapes.onnx."""
    shapes, other = tmp_path / "shapes.onnx", tmp_path / "x.onnx"
    shapes.write_bytes(demo_model.read_bytes())
    other.write_bytes(demo_model.read_bytes() + b"\0")
    profile = default_reference_path(shapes)
    reference.save(profile)
    before = profile.read_bytes()
    with pytest.raises(InputError, match=r"--drift-reference .*shapes\.onnx\.drift\.json is "
                                         r".*shapes\.onnx's own profile path .* writing x\.onnx's "
                                         r"profile there would replace it\. Leave PATH out to "
                                         r"write .*x\.onnx\.drift\.json"):
        refuse_another_models_profile(profile, other)
    assert profile.read_bytes() == before
    refuse_another_models_profile(profile, shapes)  # the model's own profile: rewritten
    refuse_another_models_profile(default_reference_path(other), other)
    refuse_another_models_profile(tmp_path / "gate.json", other)  # any other name
    refuse_another_models_profile(tmp_path / "gone.onnx.drift.json", other)  # no such model
    for model_or_not_a_profile in (shapes, tmp_path / "new.onnx", tmp_path / "notes.json"):
        (tmp_path / "notes.json").write_text("{}")
        with pytest.raises(InputError, match=r"names a model or a file that is no drift "
                                             r"profile; .* leave PATH out to write "
                                             r".*x\.onnx\.drift\.json, or name a new \.json"):
            refuse_another_models_profile(model_or_not_a_profile, other)


@pytest.mark.parametrize(("uri", "expected"), [
    ("synthetic://shapes?shift=foggy", r"unknown shift 'foggy'; use one of dark, covered"),
    ("synthetic://shapes?shift=dark&shift_after=x", r"shift_after"),
    # a user check: shift_after alone ran the plain scene without a word
    ("synthetic://shapes?shift_after=5", r"shift_after says from which frame the scene "
                                         r"shifts, but no shift= says how; add shift= with one "
                                         r"of dark, covered"),
])
def test_bad_shift_options(uri, expected):
    with pytest.raises(SourceError, match=expected):
        SyntheticSource(SourceUri.parse(uri))


def test_shift_starts_after_the_given_frame():
    plain = SyntheticSource(SourceUri.parse("synthetic://shapes?fps=1000&seed=3"))
    dark = SyntheticSource(SourceUri.parse("synthetic://shapes?fps=1000&seed=3&shift=dark"
                                           "&shift_after=2"))
    plain.open()
    dark.open()
    means = []
    for _ in range(4):
        a, b = plain.read(), dark.read()
        assert a is not None and b is not None
        means.append((float(a.image.mean()), float(b.image.mean())))
        a.release()
        b.release()
    assert [m[0] == m[1] for m in means] == [True, True, False, False]
    assert means[3][1] < 0.3 * means[3][0]


def run_monitor(demo_model: Path, reference: DriftReference, settings: DriftConfig,
                frames: int, shift: SceneShift | None) -> list[dict]:
    published: list[dict] = []
    monitor = DriftMonitor("gate", settings, reference, published.append)
    scene = ShapeScene(seed=1)
    with OrtRunner.from_path(demo_model, threads=1, slots=1) as runner:
        letterbox, decode = letterboxer_from_spec(runner.spec), decoder_from_spec(runner.spec)
        for index in range(frames):
            image, _ = scene.next()
            if shift is not None:
                shift.apply(image, scene.frame_index)
            ts = 1_000.0 + index / FPS
            monitor.observe_image(ts, image)
            detections = decode(runner.infer(0)[0], letterbox(image, runner.input_buffer(0)))
            monitor.observe_detections(ts, detections, image.shape[1], image.shape[0])
    return published


def test_normal_scene_stays_ok_and_a_night_scene_alerts_within_the_window(demo_model, reference,
                                                                           caplog):
    window, normal_s, shifted_s = 60.0, 150.0, 60.0
    settings = DriftConfig(window_s=window, min_frames=100)
    shift = SceneShift("dark", after=int(normal_s * FPS))
    with caplog.at_level(logging.INFO, logger="edge.drift"):
        published = run_monitor(demo_model, reference, settings,
                                int((normal_s + shifted_s) * FPS), shift)
    states = [(p["ts"] - 1_000.0, p["state"]) for p in published]
    assert states[0] == (0.0, "warming_up")
    warm = [s for t, s in states if t < window - 1e-6]
    assert set(warm) == {"warming_up"}
    before = [s for t, s in states if window - 1e-6 <= t <= normal_s]
    assert before and set(before) == {"ok"}, states
    alerts = [t for t, s in states if s == "alert"]
    assert alerts and normal_s < alerts[0] <= normal_s + window, states
    last = published[-1]
    assert last["input"]["brightness"] > settings.threshold
    assert set(last["scores"]) == {"circle", "square", "triangle", "star", "all_classes",
                                   "detections_per_frame", "box_size"}
    assert last["window_s"] == window and "input.brightness" in last["drifted"]
    # what raises an alert is said beside the figures (a user check: "circle 1.75, threshold
    # 0.25, ok" could not be told apart from a missed alert)
    assert last["judged"] == ["scores.all_classes", "input.brightness", "input.contrast",
                              "input.saturation", "input.colour_cast", "input.edge_orientation"]
    assert set(last["drifted"]) <= set(last["judged"])
    warnings = [r.getMessage() for r in caplog.records if "drift alert" in r.getMessage()]
    # logged once per change of what drifted, not at every evaluation
    causes = [p["drifted"] for p in published if p["state"] == "alert"]
    changes = [c for i, c in enumerate(causes) if i == 0 or c != causes[i - 1]]
    assert len(warnings) == len(changes) and len(changes) < len(causes), (changes, causes)
    assert "was " not in warnings[0]
    for message, earlier in zip(warnings[1:], changes, strict=False):
        assert message.endswith(f"(was {', '.join(earlier)})")
    # a user check: a camera judged fine said nothing, though the README says each change is
    # logged once: warming_up -> ok is said, with the largest statistic that window
    # (of the statistics it alerts on: by default the inputs and all classes' scores, not
    # each class's, which read above the threshold beside "ok" in a user check)
    first_ok = next(p for p in published if p["state"] == "ok")
    values = {"scores.all_classes": first_ok["scores"]["all_classes"],
              **{f"input.{k}": v for k, v in first_ok["input"].items()}}
    largest = max((name for name in values if values[name] is not None), key=values.get)
    said = [r.getMessage() for r in caplog.records if "drift ok" in r.getMessage()]
    assert said == [f"camera gate: drift ok over its first 60 s window (the largest psi it "
                    f"alerts on: {largest} {values[largest]:.3g})"]
    assert values[largest] <= settings.threshold


@pytest.mark.parametrize(("shift", "brightness", "contrast"), [
    ("dark", "lower", "lower"), ("covered", "lower", "lower"), ("noise", "same", "higher")])
def test_shifts_show_in_the_input_statistics(shift, brightness, contrast):
    def stats(kind):
        result = DriftStats(4)
        for image in scene_images(1, 20, 7, kind):
            result.add_image(image)
        bins = np.arange(16)
        return ((result.brightness * bins).sum() / result.frames,
                (result.contrast * bins).sum() / result.frames)

    (b0, c0), (b1, c1) = stats(None), stats(shift)
    expected = {"lower": lambda a, b: b < a - 2, "higher": lambda a, b: b > a + 0.5,
                "same": lambda a, b: abs(a - b) <= 1}
    assert expected[brightness](b0, b1) and expected[contrast](c0, c1), (b0, b1, c0, c1)


def _input_drift(reference_images, window_images) -> dict[str, float | None]:
    reference_stats, window = DriftStats(4), DriftStats(4)
    for image in reference_images:
        reference_stats.add_image(image)
    for image in window_images:
        window.add_image(image)
    return compare(reference_stats, window, ("a", "b", "c", "d"), psi)[1]


@pytest.mark.parametrize(("shift", "statistic"), [
    ("grey", "saturation"), ("turned", "edge_orientation"), ("swap", "colour_cast")])
def test_a_grey_or_turned_camera_drifts_where_brightness_and_contrast_cannot_see_it(shift,
                                                                                   statistic):
    """A user check: a picture turned a quarter round, or with its colours swapped, stayed
    "ok" for every window: brightness and contrast do not change with either."""
    normal = _input_drift(scene_images(1, 150, 15), scene_images(1, 100, 5))
    shifted = _input_drift(scene_images(1, 150, 15), scene_images(1, 100, 5, shift))
    assert all(value is not None and value < 0.25 for value in normal.values()), normal
    assert shifted[statistic] > 2.0, shifted  # threshold 0.25
    assert shifted["brightness"] < 0.25 and shifted["contrast"] < 0.25, shifted


def test_red_and_blue_swapped_show_as_a_colour_cast():
    """A scene with a warmer cast (lamps, a sunset) turns the other way when red and blue are
    swapped; the synthetic scene's own (its median pixel's red less blue, -5 grey levels)
    does too, above."""
    def warm(images):
        for image in images:
            image[:, :, 2] = cv2.add(image[:, :, 2], 40)
            yield image

    normal = _input_drift(warm(scene_images(1, 150, 15)), warm(scene_images(1, 100, 5)))
    swapped = _input_drift(warm(scene_images(1, 150, 15)),
                           (image[:, :, ::-1].copy() for image in warm(scene_images(1, 100, 5))))
    assert normal["colour_cast"] is not None and normal["colour_cast"] < 0.25, normal
    assert swapped["colour_cast"] > 2.0, swapped


def test_a_profile_from_before_the_colour_and_orientation_statistics_still_serves(
        tmp_path, demo_model, reference, caplog):
    """Profiles written before saturation, colour cast and edge orientation were measured
    load; those are not judged, and the start says so with the command that rewrites it."""
    model = tmp_path / "m.onnx"
    model.write_bytes(demo_model.read_bytes())
    path = tmp_path / "m.onnx.drift.json"
    reference.save(path)
    data = json.loads(path.read_text())
    for name in ("saturation", "colour_cast", "edge_orientation"):
        del data["stats"][name]
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="edge.drift"):
        older = reference_from_config(DriftConfig(), model, reference.labels)
    assert older is not None
    assert older.stats.lacking == ("saturation", "colour_cast", "edge_orientation")
    assert (f"drift reference {path} was written before edge measured saturation, colour "
            "cast, edge orientation: those are not judged") in caplog.text
    assert f"edge eval {model} --data DATA --drift-reference" in caplog.text
    window = DriftStats(4)
    for image in scene_images(1, 20, 7, "grey"):
        window.add_image(image)
    inputs = compare(older.stats, window, older.labels, psi)[1]
    assert inputs["saturation"] is None and inputs["brightness"] is not None
    older.save(tmp_path / "again.json")  # saved as it was read: nothing made up
    assert "saturation" not in json.loads((tmp_path / "again.json").read_text())["stats"]


def test_a_profile_of_other_classes_is_refused_naming_both(tmp_path, demo_model, reference):
    """A user check: a profile whose labels were not the model's (its file hand-edited, the
    model's hash kept) was taken, and its payloads named classes the model does not have."""
    model = tmp_path / "m.onnx"
    model.write_bytes(demo_model.read_bytes())
    path = tmp_path / "m.onnx.drift.json"
    reference.save(path)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "labels": ["person", "car", "bus", "truck"]}))
    with pytest.raises(ModelError, match=r"profiles the classes person, car, bus, truck, but "
                                         r"m\.onnx's are circle, square, triangle, star: its "
                                         r"scores would be read as other classes'; write a new "
                                         r"one with `edge eval"):
        reference_from_config(DriftConfig(), model, reference.labels)


def test_edge_eval_writes_a_profile_from_frames_without_labels(tmp_path, demo_model):
    """A user check: the command a wrong profile's error names (`edge eval MODEL --data DATA
    --drift-reference`) refused the calibration set's unlabelled photos, and `edge calibrate
    --drift-reference` writes the INT8 model's profile, not the FP32 one's that a CPU runs."""
    model = tmp_path / "shapes.onnx"
    model.write_bytes(demo_model.read_bytes())
    frames = tmp_path / "frames"
    frames.mkdir()
    images = list(scene_images(1, 30, 15))
    for index, image in enumerate(images):  # PNG: read back exactly as written
        cv2.imwrite(str(frames / f"{index:03d}.png"), image)
    done = subprocess.run([sys.executable, "-m", "edge", "eval", str(model), "--data",
                           str(frames), "--drift-reference", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert said == {"drift_reference": str(default_reference_path(model)), "frames": 30,
                    "scored": False}
    written = reference_for_model(default_reference_path(model), model)
    expected = drift_reference_from_images(model, images, "frames", threads=1)
    assert json.dumps(written.stats.to_dict(), sort_keys=True) == \
        json.dumps(expected.stats.to_dict(), sort_keys=True)
    # a video of the camera's frames too, to a path of its own
    video = tmp_path / "camera.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 15.0,
                             (images[0].shape[1], images[0].shape[0]))
    for image in images:
        writer.write(image)
    writer.release()
    profile = tmp_path / "from-video.drift.json"
    done = subprocess.run([sys.executable, "-m", "edge", "eval", str(model), "--data",
                           str(video), "--drift-reference", str(profile)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"wrote drift reference {profile} from 30 frames")
    assert reference_for_model(profile, model).stats.frames == 30
