"""Fixtures of the converter tests."""

from tests.converters.cli_results import edge

__all__ = ["edge"]
