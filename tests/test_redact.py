from __future__ import annotations

import traceback

import pytest

from edge.errors import SourceError
from edge.redact import redact_text, redact_uri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("rtsp://admin:hunter2@cam:554/s1", "rtsp://admin:REDACTED@cam:554/s1"),
        ("mqtts://edge:pw@broker", "mqtts://edge:REDACTED@broker"),
        ("rtsp://token-only@cam/s", "rtsp://token-only@cam/s"),
        ("rtsp://cam/s?user=a&password=hunter2&fps=5",
         "rtsp://cam/s?user=a&password=REDACTED&fps=5"),
        ("rtsp://cam/s?authToken=abc", "rtsp://cam/s?authToken=REDACTED"),
        ("rtsp://u:p@ss@cam/s", "rtsp://u:REDACTED@cam/s"),
        ("rtsp://u:hunter2@cam:bad/s", "rtsp://REDACTED@cam:bad/s"),
        ("v4l2:///dev/video0?width=640", "v4l2:///dev/video0?width=640"),
        ("file:///clip.mp4?key=abc", "file:///clip.mp4?key=REDACTED"),
        ("synthetic://shapes?fps=15&seed=1", "synthetic://shapes?fps=15&seed=1"),
    ],
)
def test_redact_uri(uri, expected):
    assert redact_uri(uri) == expected


def test_redact_text_hides_passwords_of_uris_inside_messages():
    text = ("source 'rtsp://admin:hunter2@10.0.0.5/live?token=abc' failed (timeout); also "
            "mqtt://h:1883 and \"rtsp://u:p@ss@cam\"")
    assert redact_text(text) == ("source 'rtsp://admin:REDACTED@10.0.0.5/live?token=REDACTED' "
                                 "failed (timeout); also mqtt://h:1883 and "
                                 "\"rtsp://u:REDACTED@cam\"")


def test_edge_errors_never_show_a_uri_secret():
    error = SourceError("source 'rtsp://admin:hunter2@cam/live' could not be opened")
    assert str(error) == "source 'rtsp://admin:REDACTED@cam/live' could not be opened"
    assert "hunter2" not in "".join(traceback.format_exception(error))
