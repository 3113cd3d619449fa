"""Frame sources, one module per kind, selected by URI scheme."""

from __future__ import annotations

from collections.abc import Callable

from edge.errors import SourceError
from edge.sources.base import Frame, FramePool, LatestFrame, Source
from edge.sources.opencv import csi_source, file_source, rtsp_source, v4l2_source
from edge.sources.replay import ReplaySource
from edge.sources.synthetic import SyntheticSource
from edge.sources.uri import SourceUri

SOURCE_KINDS: dict[str, Callable[[SourceUri], Source]] = {
    "synthetic": SyntheticSource,
    "file": file_source,
    "v4l2": v4l2_source,
    "rtsp": rtsp_source,
    "rtsps": rtsp_source,
    "csi": csi_source,
    "replay": ReplaySource,
}


def source_from_uri(text: str) -> Source:
    """Build (but do not open) the source a URI names."""
    uri = SourceUri.parse(text)
    if uri.scheme not in SOURCE_KINDS:
        raise SourceError(f"source '{text}': unknown scheme '{uri.scheme}://'; supported: "
                          f"{', '.join(s + '://' for s in SOURCE_KINDS)}")
    return SOURCE_KINDS[uri.scheme](uri)


__all__ = ["Frame", "FramePool", "LatestFrame", "Source", "SourceUri", "source_from_uri"]
