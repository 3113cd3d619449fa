from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto

from edge.errors import ModelError
from edge.postprocess import DetectionDecoder
from edge.preprocess import Letterboxer
from edge.runners.onnxruntime import OrtRunner
from edge.spec import InputSpec, ModelSpec, spec_from_onnx_file
from edge.synthetic import SHAPE_LABELS, ShapeScene
from tests.onnx_graphs import constant_head_model


def tiny_spec(labels=("a", "b", "c", "d"), size=64, head="anchor_free"):
    return ModelSpec(task="detect", labels=labels, head=head, output="output0",
                     input=InputSpec(name="images", width=size, height=size))


def test_bundled_model_is_self_describing(demo_model):
    with OrtRunner.from_path(demo_model) as runner:
        assert runner.spec.labels == SHAPE_LABELS
        assert runner.spec.head == "anchor_free"
        assert runner.output_shape == (1, 4 + len(SHAPE_LABELS), 2100)
        assert runner.input_buffer(0).shape == (1, 320, 320, 3)
        assert runner.input_buffer(0).dtype == np.uint8


def test_slots_are_independent_and_results_repeatable(demo_model):
    scene = ShapeScene(seed=3)
    with OrtRunner.from_path(demo_model) as runner:
        letterbox = Letterboxer()
        first, _ = scene.next()
        second, _ = scene.next()
        letterbox(first, runner.input_buffer(0))
        letterbox(second, runner.input_buffer(1))
        runner.submit(0)
        runner.submit(1)
        out0, out1 = runner.wait(0).copy(), runner.wait(1).copy()
        again = runner.infer(0)
        np.testing.assert_array_equal(out0, again)
        assert not np.array_equal(out0, out1)


def test_steady_state_loop_allocates_nothing_frame_sized(demo_model):
    """Letterbox + infer + decode over 200 frames: no frame-sized allocation per frame."""
    scene = ShapeScene(seed=5)
    frames = [scene.next()[0] for _ in range(4)]
    frame_bytes = frames[0].nbytes
    with OrtRunner.from_path(demo_model) as runner:
        decoder = DetectionDecoder(runner.spec)
        letterbox = Letterboxer()
        for frame in frames:  # warm up: buffers painted, thread pool started
            decoder(runner.infer(0)[0], letterbox(frame, runner.input_buffer(0)))
        tracemalloc.start()
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for i in range(200):
            geometry = letterbox(frames[i % 4], runner.input_buffer(i % 2))
            decoder(runner.infer(i % 2)[0], geometry)
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak - baseline < frame_bytes / 4, f"peak {peak - baseline} B per-frame allocations"
    assert current - baseline < 64 * 1024, "memory grows with the number of frames"


def test_missing_and_non_model_files(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        OrtRunner.from_path(tmp_path / "absent.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(bytes(range(1, 256)) * 2)
    with pytest.raises(ModelError, match=r"is not an ONNX model ONNX Runtime can load .*; the "
                                          r"file may be cut short .* the \.onnx that `edge "
                                          r"convert`"):
        OrtRunner.from_path(junk)


@pytest.mark.parametrize("name, content, said", [
    ("yolo.engine", b"\x01\x02junk", "is a TensorRT engine, which edge builds itself: give the "
                                      ".onnx model it was built from"),
    ("yolo.bin", b"ftrt\x00\x00junk", "is a TensorRT engine"),  # its magic, whatever its name
    ("yolo.cache", b"TRT-100300-EntropyCalibration2\nimages: 3c010a14\n",
     "is a TensorRT calibration cache, not a model: give the .onnx model; a cache goes with it "
     "to `edge build-engine MODEL.onnx --cache FILE`"),
])
def test_tensorrt_files_given_as_the_model_are_named(tmp_path, name, content, said):
    """A user check: an engine given as model.path read "is not an ONNX model ... copy or
    export it again in full", the wrong fix for a file that is whole."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelError, match=re.escape(said)):
        OrtRunner.from_path(path)
    with pytest.raises(ModelError, match=re.escape(said)):
        spec_from_onnx_file(path)


@pytest.mark.parametrize("name, content, said", [
    ("notes.md", "# Camera notes\n\nThe gate camera ☂ faces north.\n".encode(),
     "is a text file (it begins '# Camera notes'), not a model"),
    ("photo.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64), "is a JPEG image, not a model"),
    ("frame.png", b"\x89PNG\r\n\x1a\n" + bytes(64), "is a PNG image, not a model"),
    # a character of several bytes cut at the end of what is read is still text
    ("labels.txt", ("é" * 300).encode(), "is a text file (it begins 'ééé"),
    # a user check: text with a byte-order mark read as a model cut short
    ("notes16.txt", "Gate notes\n".encode("utf-16"), "is a text file (it begins 'Gate notes')"),
    ("notes8.txt", b"\xef\xbb\xbfGate notes\n", "is a text file (it begins 'Gate notes')"),
    ("model.onnx.gz", gzip.compress(b"\x08\x07model", mtime=0),  # one id on every worker
     "is a gzip-compressed file, not a model: decompress it (gunzip) and give the .onnx inside"),
])
def test_images_and_text_given_as_the_model_are_named(tmp_path, name, content, said):
    """A user check: a README or a photo given to edge inspect read "is not an ONNX model
    (... Wire format was corrupt); the file may be cut short or another format"."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelError, match=re.escape(f"{path} {said}")):
        OrtRunner.from_path(path)
    with pytest.raises(ModelError, match=re.escape(f"{path} {said}")):
        spec_from_onnx_file(path)


def test_a_zip_archive_is_named_as_one_and_a_model_inside_it_too(tmp_path):
    """A user check: every zip read as a PyTorch checkpoint, to convert."""
    plain, holding = tmp_path / "notes.zip", tmp_path / "model.zip"
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("a.txt", "notes")
    with zipfile.ZipFile(holding, "w") as archive:
        archive.writestr("export/detector.onnx", b"\x08\x07")
    with pytest.raises(ModelError, match=re.escape(f"{plain} is a zip archive, not a model: "
                                                   "give the .onnx model")):
        spec_from_onnx_file(plain)
    with pytest.raises(ModelError, match=re.escape(
            f"{holding} is a zip archive holding export/detector.onnx, not a model: unzip it "
            "and give export/detector.onnx")):
        OrtRunner.from_path(holding)


def test_a_model_named_like_an_engine_is_still_read_as_a_model(tmp_path, demo_model):
    """A user check: an ONNX model renamed `.engine` was refused as a TensorRT engine."""
    renamed = tmp_path / "detector.engine"
    shutil.copy(demo_model, renamed)
    assert spec_from_onnx_file(renamed).name == spec_from_onnx_file(demo_model).name
    result = subprocess.run([sys.executable, "-m", "edge", "inspect", str(renamed)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "spec: shapes-detector" in result.stdout, result.stderr


def test_binary_junk_is_still_said_to_be_no_onnx_model(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ModelError, match="is not an ONNX model"):
        spec_from_onnx_file(path)


@pytest.mark.parametrize("kind", ["state_dict", "torchscript", "legacy"])
def test_pytorch_files_given_as_the_model_say_to_convert_them(tmp_path, kind):
    """A user check: `edge calibrate net.pt` read "is not an ONNX model (... Wire format was
    corrupt); the file may be cut short ...: copy or export it again in full" for a whole,
    valid checkpoint."""
    torch = pytest.importorskip("torch")
    network = torch.nn.Conv2d(3, 4, 3)
    path = tmp_path / "net.pt"
    if kind == "torchscript":
        torch.jit.trace(network, torch.zeros(1, 3, 8, 8)).save(str(path))
    else:
        torch.save(network.state_dict(), path, _use_new_zipfile_serialization=kind != "legacy")
    said = (f"{path} is a PyTorch file (a checkpoint or TorchScript), not an ONNX model: "
            f"convert it first, `edge convert {path} --module FILE.py:Class --input-size N -o "
            "MODEL.onnx` (TorchScript needs no --module), and give the .onnx it writes")
    with pytest.raises(ModelError, match=re.escape(said)):
        OrtRunner.from_path(path)
    with pytest.raises(ModelError, match=re.escape(said)):
        spec_from_onnx_file(path)


def test_a_model_this_user_cannot_read_is_said_to_be_unreadable(tmp_path, monkeypatch):
    """Not "not an ONNX model ... export it again": a model copied in as root, which the
    service's user may not read, is a permission to change (a user check under systemd).
    The refusal is simulated: root, as in CI, reads any file."""
    path = constant_head_model(tmp_path / "root-only.onnx", (1, 8, 10), spec=None)
    opened = Path.open

    def refused(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return opened(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refused)
    with pytest.raises(ModelError, match=r"root-only\.onnx cannot be read by (user \S+ \()?uid "
                                          r"\d+\)?: permission denied; give that user read "
                                          r"access .*chmod a\+r"):
        OrtRunner.from_path(path)


def test_model_without_spec_is_rejected(tmp_path):
    path = constant_head_model(tmp_path / "plain.onnx", (1, 8, 10), spec=None)
    with pytest.raises(ModelError, match=r"no 'edge\.spec' metadata.*edge convert"):
        OrtRunner.from_path(path)


@pytest.mark.parametrize(
    ("shape", "head"),
    [((1, 5, 10), "anchor_free"), ((1, 10, 9), "anchor_free_transposed"),
     ((1, 10, 8), "yolov5"), ((1, 8), "anchor_free")],
)
def test_output_layout_that_does_not_fit_the_spec(tmp_path, shape, head):
    path = constant_head_model(tmp_path / "odd.onnx", shape, tiny_spec(head=head))
    expected = re.escape(f"shape {list(shape)}, which does not fit the '{head}'")
    with pytest.raises(ModelError, match=expected):
        OrtRunner.from_path(path)


def test_input_that_is_not_uint8_nhwc_is_rejected(tmp_path):
    path = constant_head_model(tmp_path / "float.onnx", (1, 8, 10), tiny_spec(),
                               input_dtype=TensorProto.FLOAT)
    with pytest.raises(ModelError, match="model input is images tensor\\(float\\)"):
        OrtRunner.from_path(path)


def test_more_inference_threads_than_cores_are_warned_about_once(caplog):
    """A user check: model.threads = 64 on 2 cores ran at 8.6 FPS against 235.9 with 1,
    without a word."""
    import logging

    from edge.ort_session import intra_op_threads
    from edge.system import usable_cores

    cores = usable_cores()
    with caplog.at_level(logging.WARNING, logger="edge.ort_session"):
        assert intra_op_threads(cores + 61) == cores + 61  # given as asked
        intra_op_threads(cores + 61)
        intra_op_threads(cores)
    assert [r.getMessage() for r in caplog.records] == [
        f"ONNX Runtime was given {cores + 61} inference threads (model.threads, --threads) on "
        f"the {cores} CPU(s) this process may use: its threads then wait on each other, and "
        f"run the model many times slower than {cores} would; give 0 (one a physical core) or "
        f"at most {cores}"]
