"""matplotlib for the written reports: imported when a report is drawn, without a display."""

from __future__ import annotations

import logging
from typing import Any

from edge.errors import MissingDependencyError


def pyplot(report: str) -> Any:
    """`matplotlib.pyplot` on the Agg backend (files only), or the install command naming
    `report`. matplotlib's own INFO lines (one per plot of numeric-looking category labels)
    say nothing to the person running the command, so they are left out of its log."""
    try:
        import matplotlib  # noqa: PLC0415 - optional, slow to import

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415 - as above
    except ImportError as exc:
        raise MissingDependencyError("matplotlib", "convert", report) from exc
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    return plt
