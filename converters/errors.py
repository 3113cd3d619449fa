"""Errors specific to conversion; all are user-facing (`EdgeError`)."""

import re

from edge.errors import EdgeError


class ConversionError(EdgeError):
    """The source model cannot be converted as asked; the message says why and what to pass."""


class ParityError(ConversionError):
    """The converted model's outputs differ from the source model's beyond the tolerance."""


#: How the TorchScript interpreter's errors begin: the cause is their last line.
TORCHSCRIPT_FAILURE = "The following operation failed in the TorchScript interpreter."


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (PyTorch's and ONNX's run to pages), or its
    type where it has none; for an error inside TorchScript, its cause (the last line, after
    a traceback of the scripted code)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    lines = text.splitlines()
    if lines[0] == TORCHSCRIPT_FAILURE and len(lines) > 1:
        return re.sub(r"^\w+(Error|Exception): ", "", lines[-1].strip())
    return lines[0]
