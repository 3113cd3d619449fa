from __future__ import annotations

import traceback

import pytest

from edge.errors import SourceError
from edge.redact import redact_text, redact_uri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("rtsp://admin:hunter2@cam:554/s1", "rtsp://REDACTED@cam:554/s1"),
        ("mqtts://edge:pw@broker", "mqtts://REDACTED@broker"),
        ("rtsp://token-only@cam/s", "rtsp://REDACTED@cam/s"),
        ("mqtt://admin:pa/ss@127.0.0.1:1883", "mqtt://REDACTED@127.0.0.1:1883"),
        ("mqtt://admin:pa#ss@127.0.0.1", "mqtt://REDACTED@127.0.0.1"),
        ("mqtt://admin:pa?ss@127.0.0.1", "mqtt://REDACTED@127.0.0.1"),
        ("rtsp://cam/s?user=a&password=hunter2&fps=5",
         "rtsp://cam/s?user=a&password=REDACTED&fps=5"),
        ("rtsp://cam/s?authToken=abc", "rtsp://cam/s?authToken=REDACTED"),
        ("rtsp://u:p@ss@cam/s", "rtsp://REDACTED@cam/s"),
        ("rtsp://u:hunter2@cam:bad/s", "rtsp://REDACTED@cam:bad/s"),
        ("v4l2:///dev/video0?width=640", "v4l2:///dev/video0?width=640"),
        ("file:///clip.mp4?key=abc", "file:///clip.mp4?key=REDACTED"),
        ("synthetic://shapes?fps=15&seed=1", "synthetic://shapes?fps=15&seed=1"),
        # a user check: Azure SAS's sig, a session id and a bare p= went out in clear
        ("https://a.blob.core.windows.net/c/x.mp4?sv=2022&sig=hunter2",
         "https://a.blob.core.windows.net/c/x.mp4?sv=2022&sig=REDACTED"),
        ("rtsp://cam/s?session=hunter2&u=admin&p=hunter2&sid=x&speed=2",
         "rtsp://cam/s?session=REDACTED&u=admin&p=REDACTED&sid=REDACTED&speed=2"),
    ],
)
def test_redact_uri(uri, expected):
    assert redact_uri(uri) == expected


def test_redact_text_hides_passwords_of_uris_inside_messages():
    text = ("source 'rtsp://admin:hunter2@10.0.0.5/live?token=abc' failed (timeout); also "
            "mqtt://h:1883 and \"rtsp://u:p@ss@cam\"")
    assert redact_text(text) == ("source 'rtsp://REDACTED@10.0.0.5/live?token=REDACTED' "
                                 "failed (timeout); also mqtt://h:1883 and "
                                 "\"rtsp://REDACTED@cam\"")


def test_a_quoted_uri_is_redacted_to_its_closing_quote_a_password_with_a_space_too():
    """A password holding a space was shown from the space on (a user check of `edge
    probe`): the URI was taken to end at white space."""
    text = ("source 'rtsp://admin:Zq9 secret@cam:554/cam' could not be opened; "
            "\"mqtts://edge:a b c@broker\" refused; bare rtsp://u:p@h/x ends at the space")
    assert redact_text(text) == ("source 'rtsp://REDACTED@cam:554/cam' could not be opened; "
                                 "\"mqtts://REDACTED@broker\" refused; bare "
                                 "rtsp://REDACTED@h/x ends at the space")


def test_edge_errors_never_show_a_uri_secret():
    error = SourceError("source 'rtsp://admin:hunter2@cam/live' could not be opened")
    assert str(error) == "source 'rtsp://REDACTED@cam/live' could not be opened"
    assert "hunter2" not in "".join(traceback.format_exception(error))


@pytest.mark.parametrize("url", ["mqtt://admin:Top/S3cret@127.0.0.1:1883",
                                 "mqtt://admin:Top#S3cret@127.0.0.1",
                                 "mqtt://admin:Top?S3cret@127.0.0.1"])
def test_config_errors_never_show_a_password_holding_url_delimiters(url):
    """A parser that ends the authority at `/`, `#` or `?` used to quote the password as a
    path or a port; the user info is now cut at the last `@` first."""
    from edge.config import config_from_dict
    from edge.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        config_from_dict({"model": {"path": "m.onnx"}, "cameras": [
            {"name": "a", "source": "synthetic://shapes"}], "mqtt": {"url": url}}, "test")
    message = str(caught.value)
    assert "S3cret" not in message and "Top" not in message and "admin" not in message
    assert "user info" in message
