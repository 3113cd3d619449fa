"""Export a PyTorch module (eager or TorchScript) to a plain ONNX graph.

The exported graph takes the network's own float NCHW (or channels-last) input;
`converters.fold` then puts the camera preprocessing in front of it, the same way for every
source format.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from converters.errors import ConversionError, first_line
from edge.opsets import DEFAULT_OPSET, MIN_OPSET
from edge.stdio import stdout_silenced

if TYPE_CHECKING:
    from torch import nn

INPUT_NAME = "images"
#: Outputs are output0, output1... (Ultralytics' naming), or a returned dict's keys.
OUTPUT_PREFIX = "output"
#: What PyTorch warns about on every TorchScript source, which says nothing about the model:
#: a ScriptMethod has no Python signature for the exporter to read, and `Module._apply` (the
#: parity check's float64 copy) reads `.grad` of every parameter.
_TORCHSCRIPT_NOISE = (r"no signature found for <torch\.ScriptMethod",
                      r"The \.grad attribute of a Tensor that is not a leaf Tensor")


@contextlib.contextmanager
def torchscript_noise_muted() -> Iterator[None]:
    """PyTorch's warnings that every TorchScript source gives muted; all others shown."""
    with warnings.catch_warnings():
        for noise in _TORCHSCRIPT_NOISE:
            warnings.filterwarnings("ignore", message=noise, category=UserWarning)
        yield


@dataclass(frozen=True)
class Exported:
    """The exported graph, and what the tracer warned about: each warning's message and the
    line of the network's code it came from (`Converting a tensor to a Python boolean might
    cause the trace to be incorrect ... (net.py:42)`). A warned-about line is Python that ran on
    a tensor's value, so the graph keeps what it did for the example input."""

    model: onnx.ModelProto
    tracer_warnings: tuple[str, ...] = ()


def _require_exportable_opset(torch: Any, opset: int) -> None:
    """A ConversionError for an opset newer than the installed PyTorch's TorchScript exporter
    writes (a user check: 21 wrote a file stamped 21 past PyTorch's own "not supported"
    warning, 25 failed in PyTorch's words). Its newest is a private constant: where a PyTorch
    has none, the exporter is left to say."""
    newest = getattr(getattr(torch.onnx, "_constants", None),
                     "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", None)
    if isinstance(newest, int) and opset > newest:
        raise ConversionError(f"--opset {opset}: PyTorch {torch.__version__.split('+')[0]} "
                              f"exports opsets up to {newest}; pass one from {MIN_OPSET} to "
                              f"{newest} (default {DEFAULT_OPSET}, which TensorRT 8.5 parses)")


def onnx_from_torch(network: nn.Module, height: int, width: int, *, batch: int | None = 1,
                    opset: int = DEFAULT_OPSET) -> Exported:
    """Trace `network` on a float [batch, 3, height, width] input, or [batch, 1, ...] for a
    grey network (one that fails on 3 channels and runs on 1), or [batch, height, width, 3]
    for a channels-last one (one that fails on both and runs on that); `batch` None: dynamic.

    The TorchScript-based exporter is used: for CNNs it gives a flat graph of plain ONNX ops,
    which TensorRT's parser and ONNX Runtime's fusions handle best. Outputs are named
    `output0`, `output1`... in order, or by their keys where the network returns a dict."""
    import torch  # noqa: PLC0415 - only PyTorch sources need it: `edge convert model.onnx` runs without torch

    _require_exportable_opset(torch, opset)
    network = network.eval()
    _require_one_input(network)
    example = torch.zeros((batch or 1, 3, height, width), dtype=torch.float32)
    with torch.no_grad(), torchscript_noise_muted():
        try:  # run first: an error here is the network's, in its own words
            names = output_names(network(example))
        except Exception as exc:  # noqa: BLE001 - the user's network: re-raised, named, below
            names, example = _run_in_another_layout(network, example, exc)
    shape = _shape(example)
    dynamic_axes = None if batch else {name: {0: "batch"} for name in (INPUT_NAME, *names)}
    with (tempfile.TemporaryDirectory() as scratch, torch.no_grad(), torchscript_noise_muted(),
          warnings.catch_warnings(record=True) as caught):
        # recorded wherever they are otherwise ignored, and said once, below, as ours
        warnings.simplefilter("always", _tracer_warning())
        path = Path(scratch) / "model.onnx"
        try:  # on a failure the exporter logs its whole IR graph to descriptor 1 from C++
            # (its log switch is on whatever the setting): not ahead of --json's line
            with stdout_silenced():
                torch.onnx.export(network, (example,), str(path), dynamo=False,
                                  opset_version=opset, input_names=[INPUT_NAME],
                                  output_names=names, dynamic_axes=dynamic_axes,
                                  do_constant_folding=True)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ConversionError(f"torch.onnx.export failed for a {shape} input: "
                                  f"{first_line(exc)}{_export_advice(str(exc))}") from exc
        exported = Exported(onnx.load(str(path)), _tracer_warnings(caught))
    for other in caught:  # the rest, as they would have been shown
        if not issubclass(other.category, _tracer_warning()):
            warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
    _require_an_input_read(exported, shape)
    return exported


#: PyTorch's words for an operator it has no ONNX form of at the opset asked for
_UNSUPPORTED_OPERATOR = re.compile(r"Exporting the operator '([^']+)' to ONNX opset version "
                                   r"(\d+) is not supported")


def _export_advice(message: str) -> str:
    """What to do about the exporter's failure `message`, where that is known; else ''."""
    if "DictConstruct" in message:
        return ("; a TorchScript module that returns a dict cannot be exported: return a "
                "tuple, or convert the Python class with --module")
    unsupported = _UNSUPPORTED_OPERATOR.search(message)
    if unsupported:
        operator, opset, last = unsupported.group(1), int(unsupported.group(2)), _last_opset()
        later = (f"; a later --opset (up to {last}) helps only where a newer ONNX added "
                 f"{operator}" if opset < last else "")
        return ("; write that step of forward with operations ONNX has, or move it after "
                "the network (into code that reads the model's outputs), then convert "
                f"again{later}")
    return ""


def _last_opset() -> int:
    """The last opset PyTorch's TorchScript-based exporter writes (20 in PyTorch 2.x)."""
    from torch.onnx import _constants  # noqa: PLC0415 - only PyTorch sources need it

    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20))


def _tracer_warning() -> type[Warning]:
    """PyTorch's TracerWarning (public as torch.jit.TracerWarning, which its stubs do not
    export)."""
    import torch  # noqa: PLC0415 - only PyTorch sources need it

    warning: type[Warning] = torch.jit.TracerWarning  # type: ignore[attr-defined]
    return warning


def _tracer_warnings(caught: list[warnings.WarningMessage]) -> tuple[str, ...]:
    """Each distinct tracer warning's first sentence, with the file and line of the network's
    code it came from (PyTorch's own lines, which it ignores itself, are left out)."""
    import torch  # noqa: PLC0415 - only PyTorch sources need it

    torch_folder = Path(torch.__file__).parent
    said: dict[str, None] = {}
    for warning in caught:
        if (issubclass(warning.category, _tracer_warning())
                and not Path(warning.filename).is_relative_to(torch_folder)):
            sentence = str(warning.message).split(". ")[0].strip().rstrip(".")
            said[f"{sentence} ({Path(warning.filename).name}:{warning.lineno})"] = None
    return tuple(said)


def _require_an_input_read(exported: Exported, shape: str) -> None:
    """ConversionError when the traced graph has no input: what forward computed outside
    torch operations became a constant, and the graph gives the example's output whatever
    the image."""
    initializers = {i.name for i in exported.model.graph.initializer}
    if any(i.name not in initializers for i in exported.model.graph.input):
        return
    warned = (f" (PyTorch warned: {exported.tracer_warnings[0]})"
              if exported.tracer_warnings else "")
    raise ConversionError(
        f"tracing the network on a {shape} input made a graph that does not read its input"
        f"{warned}: forward takes its result out of PyTorch (.numpy(), .item(), .tolist()) and "
        "tracing kept the example's values as constants; keep forward in torch operations, or "
        "script it (torch.jit.script(model).save('net.torchscript')) and convert that file")


def traced_branch_advice(tracer_warnings: tuple[str, ...]) -> str:
    """What to say where a traced graph differs from its network: the first line of the
    network's Python that the tracer warned about, and how to keep its branches."""
    return (f"tracing followed one path through the network's Python code (PyTorch warned: "
            f"{tracer_warnings[0]}), so the graph keeps what that line did for the example "
            "input: script the network (torch.jit.script(model).save('net.torchscript'), then "
            "convert that file) or write the branch as tensor operations (torch.where)")


def _require_one_input(network: nn.Module) -> None:
    """ConversionError when `forward` needs more than one argument: run on one image it
    failed with "missing 1 required positional argument", and the advice was --input-size."""
    required = _required_arguments(network)
    if len(required) > 1:
        raise ConversionError(
            f"the network's forward takes {len(required)} inputs ({', '.join(required)}); a "
            "converted model has exactly one image input: wrap the network in a module whose "
            "forward(image) calls it with the others fixed (constants, or computed from the "
            "image), and convert that")


def _required_arguments(network: nn.Module) -> list[str]:
    """The arguments `forward` needs: from its Python signature, or a TorchScript module's
    schema (which has no Python signature; its first argument is `self`)."""
    schema = getattr(network.forward, "schema", None)
    if schema is not None:
        return [a.name for a in schema.arguments[1:] if not a.has_default_value()]
    try:
        parameters = inspect.signature(network.forward).parameters.values()
    except (TypeError, ValueError):
        return []
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in parameters
            if p.kind in positional and p.default is inspect.Parameter.empty]


def output_names(result: object) -> list[str]:
    """ONNX names for what a network returns, in the exporter's order: a dict's keys (where
    they are names), else `output0`, `output1`..."""
    if isinstance(result, dict):
        keys = [str(key) for key in result]
        if all(key.isidentifier() for key in keys):
            return keys
        return [f"{OUTPUT_PREFIX}{index}" for index in range(len(keys))]
    count = len(result) if isinstance(result, list | tuple) else 1
    return [f"{OUTPUT_PREFIX}{index}" for index in range(count)]


def _run_in_another_layout(network: nn.Module, colour: Any,
                           failure: Exception) -> tuple[list[str], Any]:
    """The output names and example of a network that failed on the 3-channel NCHW `colour`
    example with `failure`: the 1-channel one where it runs on grey (converters.grey makes it
    take colour), else the channels-last [N, H, W, 3] one where it runs on that (a network
    that permutes its input itself; converters.fold feeds it NHWC); otherwise the failure,
    named: the grey run's where the network asked for 1 channel."""
    grey = colour[:, :1].contiguous()
    try:
        return output_names(network(grey)), grey
    except Exception as grey_failure:  # noqa: BLE001 - the user's network: raised, named, below
        if _channels_expected(str(failure)) == 1:
            raise ConversionError(f"the network fails on a {_shape(grey)} input: "
                                  f"{first_line(grey_failure)}{_input_hint('')}") from failure
    channels_last = colour.permute(0, 2, 3, 1).contiguous()
    try:
        return output_names(network(channels_last)), channels_last
    except Exception:  # noqa: BLE001 - not a channels-last network: the NCHW failure is named
        pass
    raise ConversionError(f"the network fails on a {_shape(colour)} input: "
                          f"{first_line(failure)}{_input_hint(str(failure))}") from failure


def _shape(example: Any) -> str:
    return str(list(example.shape))


def _channels_expected(message: str) -> int | None:
    """The input channels a convolution's error says it expected, given 3."""
    channels = re.search(r"expected input.*? to have (\d+) channels, but got 3", message)
    return int(channels[1]) if channels else None


def _input_hint(message: str) -> str:
    """What to do about a network that fails on the input edge feeds it (grey networks are
    run on 1 channel instead, and converted to take colour)."""
    channels = _channels_expected(message)
    if channels is not None and channels not in (1, 3):
        return (f"; the network takes {channels}-channel input, and edge feeds it the "
                "camera's 3 colour channels (or grey from them, for a 1-channel network): "
                "wrap it in a module that holds it (self.net, loaded from the same checkpoint "
                "or with torch.jit.load) and makes its input from them, and convert that")
    if _CUDA_ONLY.search(message):
        return ("; edge convert runs the network on the CPU: take the device-specific calls "
                "out of its code (.cuda(), device='cuda': make new tensors on x.device) and "
                "convert it again")
    return "; check --input-size, and that the network runs on such an input"


#: PyTorch's errors where a network insists on a GPU (the CPU-only wheel, or no driver).
_CUDA_ONLY = re.compile(r"not compiled with CUDA|NVIDIA driver|CUDA (error|driver)|"
                        r"on the same device|cuda:\d|device='cuda'|device=cuda", re.IGNORECASE)

