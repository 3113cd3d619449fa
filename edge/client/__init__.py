"""A typed client of MQTT contract v1: models of every payload and a subscriber.

    from edge.client import Subscriber
    with Subscriber("mqtt://broker:1883", "edge/+", kinds=["event"]) as events:
        for message in events:
            print(message.device, message.payload)
"""

from edge.client.contract import (
    KIND_NAMES,
    KINDS,
    FutureVersionError,
    Message,
    PayloadError,
    parse_message,
)
from edge.client.models import (
    CameraStats,
    CameraStatus,
    CommandReply,
    Count,
    Detection,
    DetectionsMessage,
    DeviceStats,
    DeviceStatus,
    Drift,
    Event,
    FrameMeta,
    Jpeg,
    SnapshotRef,
)
from edge.client.subscriber import Subscriber
from edge.errors import EdgeError, InputError

__all__ = [
    "KINDS", "KIND_NAMES", "CameraStats", "CameraStatus", "CommandReply", "Count", "Detection",
    "DetectionsMessage", "DeviceStats", "DeviceStatus", "Drift", "EdgeError", "Event",
    "FrameMeta", "FutureVersionError", "InputError", "Jpeg", "Message", "PayloadError",
    "SnapshotRef", "Subscriber", "parse_message",
]
