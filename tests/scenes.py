"""The synthetic scene as the cameras some tests need: live (its end is an outage the
supervisor reopens it from) and slow to open, as an RTSP stream is."""

from __future__ import annotations

import time

from edge.sources.synthetic import SyntheticSource
from edge.sources.uri import SourceUri


class SlowScene(SyntheticSource):
    """`synthetic://...` whose `open` takes `opening_s` seconds; `live` as a stream is."""

    def __init__(self, uri: str, opening_s: float, live: bool = True) -> None:
        super().__init__(SourceUri.parse(uri))
        self.live = live
        self._opening_s = opening_s

    def open(self) -> None:
        time.sleep(self._opening_s)
        super().open()
