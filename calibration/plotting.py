"""matplotlib for the written reports: imported when a report is drawn, without a display."""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from edge.errors import MissingDependencyError

#: pyproject's `convert` extra requires this version of matplotlib
MATPLOTLIB_REQUIREMENT = ">=3.7"


def require_matplotlib(report: str) -> None:
    """`pyplot`'s MissingDependencyError now, without importing matplotlib, where it is not
    installed: asked before the work whose result the report shows (a user check: a
    calibration ran to its end, then exited 2 for matplotlib)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise _missing(report)


def pyplot(report: str) -> Any:
    """`matplotlib.pyplot` on the Agg backend (files only), or the install command naming
    `report`. matplotlib's own INFO lines (one per plot of numeric-looking category labels)
    say nothing to the person running the command, so they are left out of its log."""
    try:
        import matplotlib  # noqa: PLC0415 - optional, slow to import

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415 - as above
    except ImportError as exc:
        raise _missing(report) from exc
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    return plt


def _missing(report: str) -> MissingDependencyError:
    """The install command for `report`: matplotlib alone draws it (a device scoring its field
    accuracy needs no PyTorch), or the whole convert extra."""
    return MissingDependencyError("matplotlib", "convert", report,
                                  alone=f"'matplotlib{MATPLOTLIB_REQUIREMENT}'")
