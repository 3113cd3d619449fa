"""Errors specific to conversion; all are user-facing (`EdgeError`)."""

from edge.errors import EdgeError


class ConversionError(EdgeError):
    """The source model cannot be converted as asked; the message says why and what to pass."""


class ParityError(ConversionError):
    """The converted model's outputs differ from the source model's beyond the tolerance."""
