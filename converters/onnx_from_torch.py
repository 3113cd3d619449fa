"""Export a PyTorch module (eager or TorchScript) to a plain ONNX graph.

The exported graph takes the network's own float NCHW input; `converters.fold` then puts the
camera preprocessing in front of it, the same way for every source format.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from converters.errors import ConversionError, first_line
from edge.stdio import stdout_silenced

if TYPE_CHECKING:
    from torch import nn

#: Opset 17 is the newest that TensorRT 8.5 (JetPack 5) parses; TensorRT 10 reads it too.
DEFAULT_OPSET = 17
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


def onnx_from_torch(network: nn.Module, height: int, width: int, *, batch: int | None = 1,
                    opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Trace `network` on a float [batch, 3, height, width] input, or [batch, 1, ...] for a
    grey network (one that fails on 3 channels and runs on 1); `batch` None: dynamic.

    The TorchScript-based exporter is used: for CNNs it gives a flat graph of plain ONNX ops,
    which TensorRT's parser and ONNX Runtime's fusions handle best. Outputs are named
    `output0`, `output1`... in order, or by their keys where the network returns a dict."""
    import torch  # noqa: PLC0415 - only PyTorch sources need it: `edge convert model.onnx` runs without torch

    network = network.eval()
    _require_one_input(network)
    example = torch.zeros((batch or 1, 3, height, width), dtype=torch.float32)
    with torch.no_grad(), torchscript_noise_muted():
        try:  # run first: an error here is the network's, in its own words
            names = output_names(network(example))
        except Exception as exc:  # noqa: BLE001 - the user's network: re-raised, named, below
            names, example = _run_on_grey(network, example, exc)
    shape = _shape(example)
    dynamic_axes = None if batch else {name: {0: "batch"} for name in (INPUT_NAME, *names)}
    with tempfile.TemporaryDirectory() as scratch, torch.no_grad(), torchscript_noise_muted():
        path = Path(scratch) / "model.onnx"
        try:  # on a failure the exporter logs its whole IR graph to descriptor 1 from C++
            # (its log switch is on whatever the setting): not ahead of --json's line
            with stdout_silenced():
                torch.onnx.export(network, (example,), str(path), dynamo=False,
                                  opset_version=opset, input_names=[INPUT_NAME],
                                  output_names=names, dynamic_axes=dynamic_axes,
                                  do_constant_folding=True)
        except (RuntimeError, TypeError, ValueError) as exc:
            dict_output = ("; a TorchScript module that returns a dict cannot be exported: "
                           "return a tuple, or convert the Python class with --module"
                           if "DictConstruct" in str(exc) else "")
            raise ConversionError(f"torch.onnx.export failed for a {shape} input: "
                                  f"{first_line(exc)}{dict_output}") from exc
        return onnx.load(str(path))


def _require_one_input(network: nn.Module) -> None:
    """ConversionError when `forward` needs more than one argument: run on one image it
    failed with "missing 1 required positional argument", and the advice was --input-size.
    A TorchScript module, whose forward has no Python signature, is left to its run."""
    try:
        parameters = inspect.signature(network.forward).parameters.values()
    except (TypeError, ValueError):
        return
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p.name for p in parameters
                if p.kind in positional and p.default is inspect.Parameter.empty]
    if len(required) > 1:
        raise ConversionError(
            f"the network's forward takes {len(required)} inputs ({', '.join(required)}); a "
            "converted model has exactly one image input: wrap the network in a module whose "
            "forward(image) calls it with the others fixed (constants, or computed from the "
            "image), and convert that")


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


def _run_on_grey(network: nn.Module, colour: Any, failure: Exception) -> tuple[list[str], Any]:
    """The output names and the 1-channel example of a network that failed on the 3-channel
    `colour` one with `failure` and runs on grey (converters.grey makes it take colour);
    otherwise the failure, named: the grey run's where the network asked for 1 channel."""
    grey = colour[:, :1].contiguous()
    try:
        return output_names(network(grey)), grey
    except Exception as grey_failure:  # noqa: BLE001 - the user's network: raised, named, below
        if _channels_expected(str(failure)) == 1:
            raise ConversionError(f"the network fails on a {_shape(grey)} input: "
                                  f"{first_line(grey_failure)}{_input_hint('')}") from failure
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
    return "; check --input-size, and that the network runs on such an input"

