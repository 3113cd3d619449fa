from __future__ import annotations

import pytest

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
    text = "cannot open rtsp://admin:hunter2@10.0.0.5/live (timeout); also mqtt://h:1883"
    assert redact_text(text) == \
        "cannot open rtsp://admin:REDACTED@10.0.0.5/live (timeout); also mqtt://h:1883"
