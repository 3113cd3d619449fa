"""Multi-object tracking per camera: a Kalman motion model and ByteTrack-style association."""

from edge.tracking.bytetrack import ByteTracker, TrackedObject, TrackerSettings

__all__ = ["ByteTracker", "TrackedObject", "TrackerSettings"]
