"""Sampling policies and their limits, on synthetic timestamps (no waiting)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from edge.config import FramesConfig, SamplingConfig, config_from_dict
from edge.detections import Detections
from edge.errors import ConfigError
from edge.sampling import SamplingPolicy

LABELS = ("circle", "square", "triangle", "star")
NO_INTERVAL = FramesConfig(interval_s=0)


def dets(*items: tuple[int, float]) -> Detections:
    """(class_id, score) pairs -> Detections with unit boxes."""
    if not items:
        return Detections.empty()
    return Detections(np.tile(np.array([[0, 0, 10, 10]], np.float32), (len(items), 1)),
                      np.array([s for _, s in items], np.float32),
                      np.array([c for c, _ in items], np.int64))


def policy(frames: FramesConfig = NO_INTERVAL, **sampling: object) -> SamplingPolicy:
    return SamplingPolicy(frames, SamplingConfig.model_validate(sampling), LABELS)


BASE = {"model": {"path": "m.onnx"}, "cameras": [{"name": "a", "source": "synthetic://shapes"}]}


@pytest.mark.parametrize(("sampling", "camera", "expected"), [
    ({"uncertain_band": [0.0, 0.5]}, None, r"sampling\.uncertain_band: .*0 < low < high < 1"),
    ({"uncertain_band": [0.4, 1.0]}, None, r"sampling\.uncertain_band"),
    ({"uncertain_band": [0.6, 0.4]}, None,
     r"sampling\.uncertain_band: expected \[low, high\] with 0 < low < high < 1"),
    ({"limits": {"per_minute": 0}}, None, r"sampling\.limits\.per_minute: must be more than 0"),
    ({"limits": {"per_hour": -3}}, None, r"sampling\.limits\.per_hour: must be more than 0"),
    ({"limits": {"per_day": 0}}, None, r"sampling\.limits\.per_day"),
    ({"limits": {"bytes_per_hour": 0}}, None, r"sampling\.limits\.bytes_per_hour"),
    ({"audit_rate": 1.5}, None, r"sampling\.audit_rate"),
    ({"sample_everything": True}, None, r"sampling\.sample_everything: unknown key"),
    ({}, {"uncertain_band": [0.2, 1.2]}, r"cameras\.0\.sampling:\n\s+uncertain_band"),
    ({}, {"limits": {"per_minute": 0}}, r"cameras\.0\.sampling:\n\s+limits\.per_minute"),
    ({}, {"bogus": 1}, r"cameras\.0\.sampling:\n\s+bogus: unknown key"),
])
def test_bad_sampling_config_is_rejected_with_its_path(sampling, camera, expected):
    data = {**BASE, "sampling": sampling}
    if camera is not None:
        data["cameras"] = [{**BASE["cameras"][0], "sampling": camera}]
    with pytest.raises(ConfigError, match=expected):
        config_from_dict(data, "test")


def test_camera_overrides_merge_over_the_global_section():
    config = config_from_dict({
        **BASE, "sampling": {"audit_rate": 0.1, "limits": {"per_minute": 5, "per_hour": 50}},
        "cameras": [{"name": "a", "source": "synthetic://shapes",
                     "sampling": {"audit_rate": 0.5, "limits": {"per_minute": 9}}},
                    {"name": "b", "source": "synthetic://shapes"}]}, "test")
    a, b = (config.sampling_for(c) for c in config.cameras)
    assert (a.audit_rate, a.limits.per_minute, a.limits.per_hour) == (0.5, 9, 50)
    assert (b.audit_rate, b.limits.per_minute) == (0.1, 5)


def test_rare_labels_must_be_model_labels():
    with pytest.raises(ConfigError, match=r"^sampling.rare_labels: hexagon is not a label of the "
                                          r"model; its 4 labels: circle, square, triangle, "
                                          r"star; fix the names or remove them$"):
        policy(rare_labels=["hexagon"])


def test_a_cameras_own_rare_labels_are_named_as_its_key(demo_model):
    """A user check: `[cameras.sampling] rare_labels = ["Circle"]` was refused as
    `sampling.rare_labels`, a table the config did not have."""
    from edge.daemon import Daemon

    config = config_from_dict({
        **BASE, "model": {"path": str(demo_model)},
        "cameras": [{"name": "a", "source": "synthetic://shapes"},
                    {"name": "b", "source": "synthetic://shapes",
                     "sampling": {"rare_labels": ["Circle"]}}]}, "test")
    with pytest.raises(ConfigError, match=r"^cameras.1.sampling.rare_labels: Circle is not a "
                                          r"label of the model \(Circle: did you mean "
                                          r"circle\?\)"):
        Daemon(config)


@pytest.mark.parametrize(("labels", "problem"), [
    (["circle", ""], r"\['circle', ''\] holds an empty label name; remove it"),
    (["circle", "star", "circle"], r"'circle' listed twice; list each label once"),
])
def test_label_lists_refuse_empty_and_repeated_names(labels, problem):
    """A user check: `labels = ["circle", "circle", ""]` in a zone read "labels:  is not a
    label"; the duplicate alone passed without a word."""
    for section in ({"sampling": {"rare_labels": labels}},
                    {"homeassistant": {"labels": labels}},
                    {"cameras": [{"name": "a", "source": "synthetic://shapes", "zones": [
                        {"name": "z", "points": [[0, 0], [9, 0], [9, 9]], "labels": labels}]}]}):
        with pytest.raises(ConfigError, match=problem):
            config_from_dict({**BASE, **section}, "test")


@pytest.mark.parametrize(("detections", "expected"), [
    (dets(), []),
    (dets((0, 0.9)), []),
    (dets((0, 0.9), (1, 0.33)), ["uncertain"]),
    (dets((2, 0.30)), ["uncertain"]),
    (dets((2, 0.40)), ["uncertain"]),
    (dets((2, 0.41)), []),
])
def test_uncertainty_band_is_inclusive(detections, expected):
    assert policy(uncertain_band=[0.3, 0.4]).reasons(0.0, detections) == expected


def test_rare_labels_and_rare_frequency():
    listed = policy(rare_labels=["star"])
    assert listed.reasons(0.0, dets((3, 0.9))) == ["rare"]
    assert listed.reasons(1.0, dets((0, 0.9))) == []
    by_share = policy(rare_below=0.05)
    for i in range(100):  # 100 circles: stars are now 0 % of what this camera saw
        assert by_share.reasons(float(i), dets((0, 0.9))) == []
    assert by_share.reasons(100.0, dets((3, 0.9))) == ["rare"]
    assert by_share.reasons(101.0, dets((0, 0.9))) == []


def test_count_change_fires_once_per_steady_change():
    p = policy(count_change=True, count_steady_frames=3)
    counts = [2, 2, 2, 2, 3, 2, 2, 3, 3, 3, 3, 3, 1, 1, 1]
    fired = [i for i, n in enumerate(counts) if p.reasons(float(i), dets(*[(0, 0.9)] * n))]
    assert fired == [9, 14]  # 3 lasted three frames at index 9; 1 at index 14


def test_interval_and_snapshot():
    p = policy(FramesConfig(interval_s=10))
    assert p.reasons(100.0, dets()) == ["interval"]
    assert p.reasons(105.0, dets()) == []
    p.request_snapshot()
    assert p.wants_copy(106.0)
    assert p.reasons(106.0, dets()) == ["snapshot"]
    assert p.reasons(110.0, dets()) == ["interval"]


def test_a_snapshot_asked_for_after_a_frame_let_its_pixels_go_is_taken_by_the_next():
    """The MQTT thread's request can land between a frame's `wants_copy` (no copy kept) and
    its `reasons`: it was cleared there, acknowledged, and no frame was ever published."""
    p = policy(FramesConfig(interval_s=10))
    assert p.reasons(100.0, dets()) == ["interval"]
    assert not p.wants_copy(101.0)  # the frame's pixels are let go
    p.request_snapshot()  # ... then the command arrives
    assert p.reasons(101.0, dets(), copied=False) == []
    assert p.wants_copy(102.0)
    assert p.reasons(102.0, dets()) == ["snapshot"]
    assert p.sampled["snapshot"] == 1


def test_audit_sample_size_matches_its_rate_within_the_binomial_interval():
    rate, frames = 0.05, 4000
    p = policy(audit_rate=rate, seed=7)
    drawn = sum("audit" in p.reasons(i / 15, dets()) for i in range(frames))
    assert drawn == p.audit.drawn and p.audit.frames == frames
    sigma = math.sqrt(frames * rate * (1 - rate))
    assert abs(drawn - frames * rate) <= 3 * sigma, (drawn, frames * rate)


def test_a_seed_gives_each_camera_its_own_audit_draws():
    """A user check: `[sampling] seed` set once gave every camera the same draws, so cameras
    running alike were audited on the same frames."""
    def drawn(camera: str) -> list[int]:
        p = SamplingPolicy(NO_INTERVAL, SamplingConfig(audit_rate=0.1, seed=5), LABELS,
                           camera=camera)
        return [i for i in range(600) if "audit" in p.reasons(i / 15, dets())]

    gate, yard = drawn("gate"), drawn("yard")
    assert gate == drawn("gate")  # reproducible, as a seed is for
    assert gate != yard and len(set(gate) & set(yard)) < len(gate) / 2
    assert 30 <= len(gate) <= 90 and 30 <= len(yard) <= 90  # both at the rate


@pytest.mark.parametrize(("limits", "fps", "seconds", "windows"), [
    ({"per_minute": 4}, 15, 600, [(60, 4)]),
    ({"per_hour": 30}, 1, 3 * 3600, [(3600, 30)]),
    ({"per_minute": 10, "per_hour": 100}, 2, 2 * 3600, [(60, 10), (3600, 100)]),
    ({"per_day": 50}, 0.05, 2 * 86400, [(86400, 50)]),
])
def test_rate_limits_hold_in_every_sliding_window(limits, fps, seconds, windows):
    p = policy(audit_rate=0.5, seed=1, limits=limits)
    times = [t for i in range(int(seconds * fps))
             if p.reasons(t := i / fps, dets())]
    stamps = np.array(times)
    assert len(stamps) > 0
    for window, limit in windows:
        # the most samples in any window of `window` seconds that ends at a sample
        most = max(int(np.searchsorted(stamps, t, "right") - np.searchsorted(stamps, t - window,
                                                                           "right"))
                   for t in stamps)
        assert most <= limit
        assert most == limit  # the limit is reached, not just respected
    assert p.audit_limiter.refused > 0 and p.stats()["audit"]["refused"] > 0


def test_audit_draws_a_cap_refuses_are_warned_about_once(caplog):
    """A user check: audit_rate 0.05 at 10 fps under per_minute 6 filled each minute's caps in
    its first third, three frames in a row among them: no longer an even sample, unsaid."""
    p = policy(audit_rate=0.05, seed=2, limits={"per_minute": 6})
    with caplog.at_level(logging.WARNING, logger="edge.sampling"):
        for i in range(3 * 600):
            p.reasons(i / 10, dets())
    said = [r.getMessage() for r in caplog.records]
    assert p.audit_limiter.refused > 0 and len(said) == 1, said
    assert said[0] == ("sampling: audit draws (audit_rate 0.05) reached the caps "
                       "(sampling.limits: per_minute 6): past a cap each period's first draws "
                       "are kept and the rest dropped, so the audit sample is no longer spread "
                       "evenly over the frames; lower audit_rate well under a cap over the "
                       "frames its period brings (per_minute / (fps x 60))")
    caplog.clear()
    quiet = policy(audit_rate=0.005, seed=2, limits={"per_minute": 6})
    with caplog.at_level(logging.WARNING, logger="edge.sampling"):
        for i in range(3 * 600):
            quiet.reasons(i / 10, dets())
    assert quiet.audit_limiter.refused == 0 and not caplog.records
    # a user check: six cameras' warnings read as one repeated, naming none
    gate = SamplingPolicy(NO_INTERVAL, SamplingConfig(audit_rate=0.05, seed=2,
                                                      limits={"per_minute": 6}), LABELS,
                          key="cameras.0.sampling", camera="gate")
    with caplog.at_level(logging.WARNING, logger="edge.sampling"):
        for i in range(3 * 600):
            gate.reasons(i / 10, dets())
    assert [r.getMessage()[:58] for r in caplog.records] == [
        "camera gate: cameras.0.sampling: audit draws (audit_rate 0"]


def test_a_rare_label_in_view_is_sampled_once_a_min_gap_s_not_every_frame():
    p = policy(FramesConfig(interval_s=0, min_gap_s=2), rare_labels=["star"])
    sampled = [t for i in range(200) if p.reasons(t := i / 10, dets((3, 0.9)))]
    assert sampled == [float(t) for t in range(0, 20, 2)]  # 20 s at 10 fps: every 2 s


def test_other_reasons_never_thin_the_audit_sample():
    """A rare label in view for minutes used up a shared per-minute cap in under a second, and
    the audit draws of the rest of each minute were refused: the sample field accuracy takes
    as uniform held only the frames of quiet minutes."""
    p = policy(rare_labels=["star"], audit_rate=0.05, seed=3, limits={"per_minute": 5})
    reasons = [p.reasons(i / 10, dets((3, 0.9))) for i in range(10 * 600)]  # 10 min, 10 fps
    audit = sum("audit" in r for r in reasons)
    rare_only = sum(r == ["rare"] for r in reasons)
    assert audit == p.audit.drawn - p.audit_limiter.refused
    assert 45 <= audit <= 50  # its own 5 a minute (300 drawn), not what rare left over
    assert rare_only >= 40  # and rare kept its own


def test_every_refusal_is_counted_as_the_loop_copies_frames():
    """The loop keeps a frame's pixels only while `wants_copy` says so; a frame drawn for the
    audit whose pixels were let go (its caps already full when it arrived) was counted in
    `drawn` and nowhere else (189 drawn, 100 sampled, 18 refused in one run)."""
    p = policy(FramesConfig(interval_s=0, min_gap_s=2), rare_labels=["star"], audit_rate=0.5,
               seed=5, limits={"per_minute": 6})
    taken = copies_refused = 0
    for i in range(10 * 300):  # 5 minutes at 10 fps, a rare object in view throughout
        now = i / 10
        copied = p.wants_copy(now)
        copies_refused += not copied
        taken += "audit" in p.reasons(now, dets((3, 0.9)), copied=copied)
    audit = p.stats()["audit"]
    assert copies_refused > 1000  # both caps full for most of each minute
    # ... and the rare object's samples they refused are counted (2 were, of thousands): one
    # each min_gap_s of those frames, as the rare object was due, not one every frame
    assert audit["refused"] > 0
    assert copies_refused / 20 - 30 <= p.stats()["refused"] <= copies_refused / 20 + 1
    assert taken == p.sampled["audit"] == 30  # 6 a minute
    assert p.sampled["rare"] >= 30
    assert audit["drawn"] == taken + audit["refused"]
    assert abs(audit["drawn"] - 1500) < 100


def test_an_interval_sample_the_caps_refuse_is_counted_once_not_every_frame():
    """A user check: interval_s 5 under per_minute 6 at 15 fps: each minute's last 30 s of
    interval samples are refused, and `refused` grew by 15 a second (every frame while the
    cap held) instead of the 6 samples a minute it withheld."""
    p = policy(FramesConfig(interval_s=5), limits={"per_minute": 6})
    for i in range(15 * 600):  # 10 minutes at 15 fps
        now = i / 15
        p.reasons(now, dets(), copied=p.wants_copy(now))
    assert p.sampled["interval"] == 60  # at 0, 5 ... 25 s of each minute
    assert p.stats()["refused"] == 60  # those at 30, 35 ... 55 s


def test_byte_budget_per_hour_holds():
    p = policy(limits={"bytes_per_hour": 100_000})
    spent = [(t, 30_000) for t in np.arange(0, 7200, 60.0) if p.limiter.spend_bytes(t, 30_000)]
    stamps = np.array([t for t, _ in spent])
    for t in stamps:
        in_hour = (stamps > t - 3600) & (stamps <= t)
        assert 30_000 * in_hour.sum() <= 100_000
    assert len(spent) == 6  # three in each hour
    assert p.limiter.over_budget > 0


def test_a_band_below_the_threshold_decodes_lower_and_splits():
    p = SamplingPolicy(NO_INTERVAL, SamplingConfig(uncertain_band=[0.15, 0.35]), LABELS,
                       threshold=0.25)
    assert p.decode_threshold == 0.15
    decoded = dets((0, 0.9), (1, 0.2), (2, 0.3), (3, 0.1))
    published, below = p.split(decoded)
    assert published.scores.tolist() == pytest.approx([0.9, 0.3])
    assert below.class_ids.tolist() == [1, 3]
    assert p.reasons(0.0, *p.split(dets((0, 0.9), (1, 0.2)))) == ["uncertain"]
    assert p.reasons(1.0, *p.split(dets((0, 0.9), (1, 0.1)))) == []
    above = SamplingPolicy(NO_INTERVAL, SamplingConfig(uncertain_band=[0.3, 0.5]), LABELS,
                           threshold=0.25)
    assert above.decode_threshold == 0.25
    assert len(above.split(decoded)[1]) == 0


def test_validator_messages_read_as_ours_without_pydantics_prefix():
    with pytest.raises(ConfigError) as caught:
        config_from_dict({**BASE, "sampling": {"uncertain_band": [0.6, 0.4]}}, "test")
    assert "Value error" not in str(caught.value)
