"""Errors specific to conversion; all are user-facing (`EdgeError`)."""

from edge.errors import EdgeError


class ConversionError(EdgeError):
    """The source model cannot be converted as asked; the message says why and what to pass."""


class ParityError(ConversionError):
    """The converted model's outputs differ from the source model's beyond the tolerance."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (PyTorch's and ONNX's run to pages), or its
    type where it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
