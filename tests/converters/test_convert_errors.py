"""Bad inputs to `edge convert`: exit 2, a message naming the problem, nothing left behind."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from converters.errors import ConversionError
from converters.model_report import format_report, inspect_model
from tests.converters.tiny_models import TinyClassifier, TinyDetector, export_onnx, seeded

DEMO_MODULE = "converters.demo_detector.model:ShapesDetector"


def edge_convert(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", "convert", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def two_image_inputs(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Add", ["left", "right"], ["sum"])], "two",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 32, 32])
         for n in ("left", "right")],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, [1, 3, 32, 32])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


class HeatmapDetector(nn.Module):
    """CenterFace's and MTCNN P-Net's shape: a score map and a box map at 1/4 scale, decoded
    outside the network."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 8, 3, 4, 1)
        self.scores, self.boxes = nn.Conv2d(8, 1, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return torch.sigmoid(self.scores(features)), self.boxes(features)


class TimeFirstRecogniser(nn.Module):
    """A CRNN's shape: conv features pooled over height, one 37-class row per column, time
    first ([W/4, N, 37]) as CTC losses want it."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 8, 3, 4, 1)
        self.classes = nn.Linear(8, 37)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        columns = self.features(x).mean(2).permute(2, 0, 1)  # [T, N, 8]
        return self.classes(columns)


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    wrong = seeded(TinyClassifier(3))
    torch.save(wrong.state_dict(), tmp_path / "classifier.pt")
    torch.save({"epoch": 9, "state_dict_ema": wrong.state_dict()}, tmp_path / "ema.pt")
    (tmp_path / "notes.txt").write_text("not a model at all")
    (tmp_path / "settings.json").write_text('{"graph": 3}')
    return {
        "wrong_checkpoint": tmp_path / "classifier.pt",
        "ema_only": tmp_path / "ema.pt",
        "text": tmp_path / "notes.txt",
        "json": tmp_path / "settings.json",
        "two_inputs": two_image_inputs(tmp_path / "two.onnx"),
        "odd_head": export_onnx(seeded(TinyClassifier(3)), tmp_path / "odd.onnx", 32, 32),
        "detector": export_onnx(seeded(TinyDetector(2)), tmp_path / "det.onnx", 64, 64),
        "map": export_onnx(nn.Sequential(nn.Conv2d(3, 1, 3, 1, 1), nn.Sigmoid()),
                           tmp_path / "map.onnx", 32, 32),
        "sequence": export_onnx(seeded(TimeFirstRecogniser()), tmp_path / "crnn.onnx", 32, 80),
        "heatmaps": export_onnx(seeded(HeatmapDetector()), tmp_path / "heatmaps.onnx", 32, 32,
                                outputs=2),
    }


CASES = [
    ("wrong_checkpoint", ["--module", DEMO_MODULE, "--input-size", "320", "--labels", "a,b,c,d"],
     "does not match ShapesDetector: missing keys stem.0.0.weight"),
    ("wrong_checkpoint", ["--input-size", "320"], "pass the network's class with --module"),
    ("wrong_checkpoint", ["--module", "tests.converters.tiny_models:TinyClassifier",
                          "--module-args", '{"num_classes": 5}', "--input-size", "32"],
     "does not match TinyClassifier(num_classes=5): head.weight is [3, 16] in the checkpoint, "
     "[5, 16] in the module"),
    ("wrong_checkpoint", ["--module", "tests.converters.tiny_models:TinyClassifier",
                          "--weights-entry", "state_dict_ema", "--input-size", "32"],
     "classifier.pt has no such entry (it is a bare state_dict, the weights themselves: leave "
     "--weights-entry out)"),
    # a user check: the entry named was not read, and the weights said to be missing
    ("ema_only", ["--weights-entry", "state_dict_ema", "--input-size", "32"],
     "ema.pt is a PyTorch checkpoint (weights, not the network): pass the network's class "
     "with --module"),
    ("text", ["--input-size", "320"], "is not an ONNX, TorchScript or PyTorch file"),
    # onnx reads a .json path as JSON: a 52-line traceback (a user check)
    ("json", ["--labels", "a,b"], "settings.json is not an ONNX, TorchScript or PyTorch file "
     "(its content is no format torch.load reads)"),
    ("two_inputs", [], "several image-like inputs (left [1, 3, 32, 32], right [1, 3, 32, 32]); "
     "a converted model has exactly one image input: export the network with one image input"),
    ("odd_head", ["--labels", "a,b", "--head", "anchor_free"],
     "fits no supported head of layout 'anchor_free'"),
    ("detector", ["--labels", "a,b,c"], "3 labels were given but the model's output output0"),
    ("map", ["--labels", "text"], "the output [1, 1, 32, 32] is a map ([N, C, H, W]: "
     "segmentation, a text detector such as DBNet, depth), not a head edge decodes into "
     "detections or classes: edge runs detectors and classifiers only, so this model cannot be "
     "converted (supported: detect:"),
    # a user check: the refusal listed the layouts but gave no next step
    ("heatmaps", ["--labels", "face"], "no output fits a supported head; outputs: "),
    ("heatmaps", ["--labels", "face"], "classify: [N, nc]. Those are the layouts edge decodes: "
     "export the network again with its boxes and scores decoded into one output of such a "
     "layout (grid, anchors and strides applied, as Ultralytics' and PaddleDetection's "
     "exporters write it), then convert that"),
    ("sequence", ["--labels", ",".join(f"c{i}" for i in range(37))],
     "the output [20, 1, 37] looks like a sequence, time first ([T, N, C]: 20 steps of 37 "
     "values, as a CTC text recogniser writes), not a head edge decodes"),
    ("detector", ["--labels", "a,b", "--stride", "48"], "not divisible by the model stride 48"),
    ("detector", [], "labels are unknown; pass --labels (a file or a comma list) with its 2 "
                     "class names"),
    ("detector", ["--labels", "a,b", "--input-size", "128"],
     "input is fixed at 64x64, but --input-size asks for 128x128: leave --input-size out to "
     "convert it at 64x64, or export it again at 128x128 (or with a dynamic height and width) "
     "to run it at 128x128"),
]


@pytest.mark.parametrize(("source", "args", "message"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_sources_exit_2_and_write_nothing(tmp_path, sources, source, args, message):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = edge_convert(sources[source], "-o", out_dir / "model.onnx", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert list(out_dir.iterdir()) == [], "nothing may be left at the output path"


def test_checkpoint_of_a_wrapped_model_and_a_module_named_like_a_file(tmp_path, monkeypatch):
    """A DataParallel checkpoint ('module.' before every key) loads; `--module tiny:Net` for a
    tiny.py in the current folder is told to name the file."""
    from converters.torch_loading import module_class_from_spec, module_from_checkpoint

    network = seeded(TinyClassifier(3))
    torch.save({f"module.{k}": v for k, v in network.state_dict().items()}, tmp_path / "dp.pt")
    loaded = module_from_checkpoint(TinyClassifier, tmp_path / "dp.pt", {"num_classes": 3})
    frame = torch.rand(1, 3, 32, 32)
    assert torch.equal(loaded(frame), network.eval()(frame))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.py").write_text("import torch\nclass Net(torch.nn.Module):\n    pass\n")
    with pytest.raises(ConversionError, match=r"for the file tiny.py here, pass --module "
                                              r"tiny.py:Net"):
        module_class_from_spec("tiny:Net")


class BatchNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean((2, 3)))


def test_a_checkpoint_without_batchnorm_step_counts_loads_as_pytorch_loads_it(tmp_path):
    """A user check: a checkpoint without BatchNorm's `num_batches_tracked` buffers (filtered
    to parameters and running statistics, or written by another tool) was refused as "missing
    keys", though `load_state_dict` takes it; a running statistic missing still is."""
    from converters.torch_loading import module_from_checkpoint

    network = seeded(BatchNormNet()).train()
    for _ in range(3):  # running statistics of their own, not the initial 0 and 1
        network(torch.rand(4, 3, 32, 32) * 2)
    weights = {k: v for k, v in network.state_dict().items() if "num_batches" not in k}
    torch.save(weights, tmp_path / "filtered.pt")
    loaded = module_from_checkpoint(BatchNormNet, tmp_path / "filtered.pt", None)
    frame = torch.rand(1, 3, 32, 32)
    assert torch.equal(loaded(frame), network.eval()(frame))
    del weights["body.1.running_mean"]
    torch.save(weights, tmp_path / "short.pt")
    with pytest.raises(ConversionError, match=r"missing keys body\.1\.running_mean; "
                                              r"unexpected keys none"):
        module_from_checkpoint(BatchNormNet, tmp_path / "short.pt", None)


def test_a_lightning_checkpoint_loads_and_says_which_entry_and_prefix_it_read(tmp_path, caplog):
    """A user check: {'state_dict': {'model.c1.weight': ...}} listed every key as missing
    and unexpected; and of a dict with both 'model' and 'state_dict', one was read silently."""
    from converters.torch_loading import module_from_checkpoint

    network = seeded(TinyClassifier(3))
    weights = {f"model.{k}": v for k, v in network.state_dict().items()}
    torch.save({"state_dict": weights, "optimizer_states": {"lr": 0.1}, "epoch": 3},
               tmp_path / "lightning.ckpt")
    with caplog.at_level("INFO"):
        loaded = module_from_checkpoint(TinyClassifier, tmp_path / "lightning.ckpt",
                                        {"num_classes": 3})
    frame = torch.rand(1, 3, 32, 32)
    assert torch.equal(loaded(frame), network.eval()(frame))
    assert "read the weights in the checkpoint's 'state_dict' entry (it also holds " \
           "'optimizer_states')" in caplog.text
    assert "keys all start with 'model.'" in caplog.text
    other = {f"other.{k}": v for k, v in seeded(TinyClassifier(4)).state_dict().items()}
    torch.save(other, tmp_path / "four.pt")  # a prefix that does not make the keys match
    with pytest.raises(ConversionError, match="does not match TinyClassifier"):
        module_from_checkpoint(TinyClassifier, tmp_path / "four.pt", {"num_classes": 3})
    # a user check: without --module-args the class's call read `TinyClassifier(**{})`
    torch.save(seeded(TinyClassifier(4)).state_dict(), tmp_path / "four-classes.pt")
    with pytest.raises(ConversionError, match=re.escape(
            "does not match TinyClassifier(): head.weight is [4, 16] in the checkpoint, "
            "[3, 16] in the module")):
        module_from_checkpoint(TinyClassifier, tmp_path / "four-classes.pt", None)


def test_an_ema_copy_is_read_from_the_entry_named_and_pointed_to_where_not(tmp_path, caplog):
    """A user check: a timm-style checkpoint's EMA weights ('state_dict_ema' beside
    'state_dict') could not be converted without re-saving them; PyTorch's own EMA
    (`AveragedModel`) saves its network under `module.` beside a step count."""
    from converters.torch_loading import module_from_checkpoint

    trained, averaged = seeded(TinyClassifier(3)), TinyClassifier(3)
    torch.manual_seed(7)
    averaged.load_state_dict({k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v
                              for k, v in trained.state_dict().items()})
    torch.save({"state_dict": trained.state_dict(), "state_dict_ema": averaged.state_dict(),
                "optimizer": {"lr": 0.1}, "epoch": 9}, tmp_path / "timm.pth.tar")
    frame = torch.rand(1, 3, 32, 32)
    with caplog.at_level("INFO"):
        plain = module_from_checkpoint(TinyClassifier, tmp_path / "timm.pth.tar", None)
    assert torch.equal(plain(frame), trained.eval()(frame))
    assert "(it also holds 'state_dict_ema', 'optimizer'); --weights-entry state_dict_ema " \
           "reads its EMA copy instead" in caplog.text
    ema = module_from_checkpoint(TinyClassifier, tmp_path / "timm.pth.tar", None,
                                 "state_dict_ema")
    assert torch.equal(ema(frame), averaged.eval()(frame))
    assert not torch.equal(ema(frame), plain(frame))

    swa = torch.optim.swa_utils
    moving = swa.AveragedModel(trained, multi_avg_fn=swa.get_ema_multi_avg_fn(0.9))
    for step in range(3):
        with torch.no_grad():
            for parameter in trained.parameters():
                parameter.add_(0.01 * (step + 1))
        moving.update_parameters(trained)
    torch.save({"model": trained.state_dict(), "model_ema": moving.state_dict()},
               tmp_path / "ema.pt")
    loaded = module_from_checkpoint(TinyClassifier, tmp_path / "ema.pt", None, "model_ema")
    assert torch.equal(loaded(frame), moving.module.eval()(frame))
    assert not torch.equal(loaded(frame), trained.eval()(frame))

    with pytest.raises(ConversionError, match=re.escape(
            "--weights-entry ema: " + str(tmp_path / "ema.pt") + " has no such entry (its "
            "entries: model, model_ema)")):
        module_from_checkpoint(TinyClassifier, tmp_path / "ema.pt", None, "ema")
    with pytest.raises(ConversionError, match=re.escape(
            "'epoch' entry holds no weights (it holds an int); its entries that hold weights: "
            "state_dict, state_dict_ema")):
        module_from_checkpoint(TinyClassifier, tmp_path / "timm.pth.tar", None, "epoch")


def test_ema_copies_as_mmengine_and_wrapped_averaged_models_save_them(tmp_path, caplog):
    """A user check: mmengine's EMA hook swaps the weights before saving (`state_dict` is the
    EMA's, `ema_state_dict` the training weights, under `module.` with a `steps` count), and
    the pointer sent users to the training weights; an AveragedModel of a DataParallel or
    compiled network (`module.module.`) did not load; a checkpoint whose only weights are an
    EMA entry was told to re-save them."""
    from converters.torch_loading import module_from_checkpoint

    trained, averaged = seeded(TinyClassifier(3)), TinyClassifier(3)
    averaged.load_state_dict({k: v * 0.9 if v.is_floating_point() else v
                              for k, v in trained.state_dict().items()})
    frame = torch.rand(1, 3, 32, 32)
    counted = {"steps": torch.tensor(30), **{f"module.{k}": v
                                            for k, v in trained.state_dict().items()}}
    torch.save({"meta": {"epoch": 3}, "state_dict": averaged.state_dict(),
                "ema_state_dict": counted, "optimizer": {"lr": 0.1}}, tmp_path / "mm.pth")
    with caplog.at_level("INFO"):
        loaded = module_from_checkpoint(TinyClassifier, tmp_path / "mm.pth", None)
    assert torch.equal(loaded(frame), averaged.eval()(frame))
    assert "mmengine keeps the EMA weights there, the training ones in 'ema_state_dict'" in \
        caplog.text and "reads its EMA copy instead" not in caplog.text
    loaded = module_from_checkpoint(TinyClassifier, tmp_path / "mm.pth", None, "ema_state_dict")
    assert torch.equal(loaded(frame), trained.eval()(frame))

    nested = {"n_averaged": torch.tensor(5),
              **{f"module.module.{k}": v for k, v in averaged.state_dict().items()}}
    torch.save(nested, tmp_path / "averaged-dp.pt")
    loaded = module_from_checkpoint(TinyClassifier, tmp_path / "averaged-dp.pt", None)
    assert torch.equal(loaded(frame), averaged(frame))

    torch.save({"epoch": 9, "state_dict_ema": averaged.state_dict()}, tmp_path / "only.pt")
    with pytest.raises(ConversionError, match=re.escape(
            "holds its weights under 'state_dict_ema', not where they are read by default: "
            "pass --weights-entry state_dict_ema")):
        module_from_checkpoint(TinyClassifier, tmp_path / "only.pt", None)
    loaded = module_from_checkpoint(TinyClassifier, tmp_path / "only.pt", None, "state_dict_ema")
    assert torch.equal(loaded(frame), averaged(frame))


def test_missing_output_directory(tmp_path, sources):
    result = edge_convert(sources["detector"], "-o", tmp_path / "nowhere" / "m.onnx",
                          "--labels", "a,b")
    assert result.returncode == 2
    assert "output directory" in result.stderr and "does not exist" in result.stderr


def test_output_that_is_the_source_and_a_folder_as_source_are_refused(tmp_path, sources):
    source = sources["detector"]
    before = source.read_bytes()
    result = edge_convert(source, "-o", source, "--labels", "a,b")
    assert result.returncode == 2 and "is the input model itself" in result.stderr
    assert source.read_bytes() == before
    result = edge_convert(tmp_path, "-o", tmp_path / "m.onnx", "--labels", "a,b")
    assert result.returncode == 2 and "is a folder; pass the model file" in result.stderr
    inspect = subprocess.run([sys.executable, "-m", "edge", "inspect", str(tmp_path)],
                             capture_output=True, text=True, timeout=120)
    assert inspect.returncode == 2 and "is a folder; pass a model file" in inspect.stderr


@pytest.mark.parametrize(("name", "meant"), [("m.pt", "m.onnx"), ("m.engine", "m.onnx"),
                                            ("m", "m.onnx"), ("m.v2", "m.v2.onnx"),
                                            ("m.onnx.pt", "m.onnx")])
def test_an_output_not_named_onnx_is_refused_with_the_name_to_give(name, meant, tmp_path,
                                                                    sources):
    """A user check: `-o x.pt` wrote an ONNX model that edge inspect and calibrate took and
    the TensorRT runner refuses; a .pt given to them is PyTorch's."""
    out = tmp_path / "out"
    out.mkdir()
    result = edge_convert(sources["detector"], "-o", out / name, "--labels", "a,b")
    assert result.returncode == 2
    assert (f"-o {out / name}: the model written is ONNX, and model files are told by "
            f"their extension") in result.stderr
    assert f"name it {out / meant}" in result.stderr
    assert list(out.iterdir()) == []
    assert edge_convert(sources["detector"], "-o", out / "M.ONNX", "--labels", "a,b",
                        "--stride", "4").returncode == 0


def test_existing_output_survives_a_failed_conversion(tmp_path, sources):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous artifact")
    result = edge_convert(sources["detector"], "-o", out, "--labels", "a,b,c")
    assert result.returncode == 2
    assert out.read_bytes() == b"previous artifact"


def test_success_prints_parity_and_json(tmp_path, sources):
    out = tmp_path / "model.onnx"
    result = edge_convert(sources["detector"], "-o", out, "--labels", "a,b", "--stride", "4",
                          "--json")
    assert result.returncode == 0, result.stderr
    import json

    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["head"] == "anchor_free" and summary["max_rel_error"] < 1e-5
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _with_external_weights(tmp_path: Path) -> Path:
    """The classifier saved as an exporter saves a model over 2 GB: its weights in a data
    file beside the .onnx."""
    folder = tmp_path / "export"
    folder.mkdir()
    model = onnx.load(str(export_onnx(seeded(TinyClassifier(3)), tmp_path / "c.onnx", 32, 32)))
    onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.data", size_threshold=0)
    return folder / "model.onnx"


def test_inspect_counts_the_external_data_file_and_names_a_missing_one(tmp_path):
    source = _with_external_weights(tmp_path)
    data = source.parent / "model.data"
    report = inspect_model(source)
    size = data.stat().st_size
    assert report["external_data"] == [{"location": "model.data", "bytes": size,
                                        "needed": size}]
    assert f" + model.data {size / 1e6:.2f} MB, sha256" in format_report(report)
    data.write_bytes(data.read_bytes()[:3000])
    assert (f" + model.data 0.00 MB, CUT SHORT: the model reads {size / 1e6:.2f} MB from it, "
            "sha256") in format_report(inspect_model(source))
    data.unlink()
    assert " + model.data MISSING, sha256" in format_report(inspect_model(source))


def test_weights_in_external_data_convert_and_their_absence_is_named(tmp_path):
    source = _with_external_weights(tmp_path)
    converted = tmp_path / "whole.onnx"
    result = edge_convert(source, "-o", converted, "--labels", "a,b,c")
    assert result.returncode == 0, result.stderr
    written = onnx.load(str(converted), load_external_data=False)  # one file: weights inside
    assert not any(t.data_location == TensorProto.EXTERNAL for t in written.graph.initializer)
    data = source.parent / "model.data"
    whole = data.read_bytes()
    for damage, message in ((data.unlink,
                             "keeps its weights in external data file(s) model.data, not found "
                             f"in {source.parent}; copy them beside the model"),
                            (lambda: data.write_bytes(whole[:3000]),
                             "its weights' external data could not be read (External data "
                             "length")):
        damage()
        out = tmp_path / "out.onnx"
        result = edge_convert(source, "-o", out, "--labels", "a,b,c")
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and not out.exists()


def test_a_model_renamed_by_hand_reads_back_and_json_is_no_model(tmp_path, sources):
    """A converted model the user renamed `model.json` was parsed as JSON by `edge inspect`; a
    JSON file given as a model was a traceback. (`-o model.json` itself is refused.)"""
    out = tmp_path / "model.onnx"
    done = edge_convert(sources["odd_head"], "-o", out, "--labels", "a,b,c")
    assert done.returncode == 0, done.stderr
    renamed = out.rename(tmp_path / "model.json")
    assert inspect_model(renamed)["spec"]["labels"] == ["a", "b", "c"]
    shown = subprocess.run([sys.executable, "-m", "edge", "inspect", str(renamed)],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr  # a ranges file is told apart by its content
    inspected = subprocess.run([sys.executable, "-m", "edge", "inspect", str(sources["json"])],
                               capture_output=True, text=True, timeout=120)
    assert inspected.returncode == 2 and "Traceback" not in inspected.stderr
    assert f"{sources['json']} is a text file (it begins '{{\"graph\": 3}}'), not a model" in \
        inspected.stderr


def test_an_opset_newer_than_pytorch_exports_is_refused_naming_the_range(tmp_path, sources):
    """A user check: `--opset 21` wrote a file stamped 21 past PyTorch's own "not supported"
    warning (a site-packages path in it), `--opset 25` failed in PyTorch's words."""
    from torch.onnx import _constants

    newest = _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    common = ["--module", "tests.converters.tiny_models:TinyClassifier", "--input-size", "32",
              "--labels", "a,b,c", "-o", out]
    for opset in (newest + 1, 25):
        refused = edge_convert(sources["wrong_checkpoint"], *common, "--opset", str(opset))
        assert refused.returncode == 2, refused.stderr
        assert (f"--opset {opset}: PyTorch {torch.__version__.split('+')[0]} exports opsets up "
                f"to {newest}; pass one from 13 to {newest} (default 17, which TensorRT 8.5 "
                "parses)") in refused.stderr
        assert "site-packages" not in refused.stderr and not out.exists()
    done = edge_convert(sources["wrong_checkpoint"], *common, "--opset", str(newest))
    assert done.returncode == 0, done.stderr
    assert "site-packages" not in done.stderr
    assert onnx.load(str(out)).opset_import[0].version == newest


def test_an_opset_asked_of_an_onnx_source_is_said_to_be_unused(tmp_path):
    """A user check: `--opset 99` (or 13) on an ONNX file passed without a word, the output
    keeping the file's own opset 17."""
    import json

    source = export_onnx(seeded(TinyClassifier(3)), tmp_path / "c.onnx", 32, 32)
    asked = edge_convert(source, "--opset", "99", "--labels", "a,b,c", "-o",
                         tmp_path / "asked.onnx", "--json")
    assert asked.returncode == 0, asked.stderr
    assert ("--opset 99 not used: it sets the opset of a PyTorch network's export, and an ONNX "
            "file keeps its own (one below 13 is upgraded to 13)") in \
        json.loads(asked.stdout.strip().splitlines()[-1])["notes"]
    plain = edge_convert(source, "--labels", "a,b,c", "-o", tmp_path / "plain.onnx", "--json")
    assert not any("--opset" in note
                   for note in json.loads(plain.stdout.strip().splitlines()[-1])["notes"])
