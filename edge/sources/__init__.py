"""Frame sources, one module per kind, selected by URI scheme."""

from __future__ import annotations

from collections.abc import Callable

from edge.errors import SourceError
from edge.redact import redact_text
from edge.sources.base import Frame, FramePool, LatestFrame, Source
from edge.sources.opencv import csi_source, file_source, stream_source, v4l2_source
from edge.sources.replay import ReplaySource
from edge.sources.snapshot import SNAPSHOT_KEY, Snapshots, SnapshotSource
from edge.sources.synthetic import SyntheticSource
from edge.sources.uri import SourceUri
from edge.wording import likely_meant

SOURCE_KINDS: dict[str, Callable[[SourceUri], Source]] = {
    "synthetic": SyntheticSource,
    "file": file_source,
    "v4l2": v4l2_source,
    "rtsp": stream_source,
    "rtsps": stream_source,
    "http": stream_source,
    "https": stream_source,
    "csi": csi_source,
    "replay": ReplaySource,
}


def source_from_uri(text: str, snapshots: Snapshots | None = None) -> Source:
    """Build (but do not open) the source a URI names; with `snapshots`, an http(s) URL's
    still image fetched at their interval (a camera that serves no stream)."""
    uri = SourceUri.parse(text)
    if snapshots is not None:
        if uri.scheme not in ("http", "https"):
            raise SourceError(f"source '{text}': a snapshot interval ({SNAPSHOT_KEY}, edge "
                              "probe's --snapshot-interval) fetches an http:// or https:// "
                              f"still image, not a {uri.scheme}:// source; leave it out for "
                              "this one")
        return SnapshotSource(uri, snapshots)
    if uri.scheme not in SOURCE_KINDS:
        close = likely_meant(uri.scheme.lower(), SOURCE_KINDS, cutoff=0.6)
        guess = f"did you mean {close}://? " if close else ""
        raise SourceError(f"source '{text}': unknown scheme '{uri.scheme}://'; {guess}supported: "
                          f"{', '.join(s + '://' for s in SOURCE_KINDS)}")
    return SOURCE_KINDS[uri.scheme](uri)


def camera_error(key: str, name: str, exc: SourceError) -> SourceError:
    """A source error at start, naming where it is in the config (`key`, as `Config.key`
    names `cameras.N.source`) and which camera it is."""
    return SourceError(f"{key} (camera '{name}'): {redact_text(str(exc))}")


def probe_frame_size(text: str) -> tuple[int, int] | None:
    """(width, height) of a local file source's frames, read by opening it and decoding its
    first frame; None for any other source (a stream or a device is not opened before the
    daemon runs it) and for a file that cannot be read (its camera reports that when it
    starts)."""
    uri = SourceUri.parse(text)
    if uri.scheme != "file":
        return None
    source = source_from_uri(text)
    try:
        source.open()
        frame = source.read()
    except SourceError:
        return None
    finally:
        source.close()
    return None if frame is None else (frame.image.shape[1], frame.image.shape[0])


__all__ = ["Frame", "FramePool", "LatestFrame", "Snapshots", "Source", "SourceUri",
           "probe_frame_size", "source_from_uri"]
