from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from paho.mqtt import publish

import edge.client as edge_client
from edge.client import (
    KINDS,
    DetectionsMessage,
    Event,
    FutureVersionError,
    Message,
    PayloadError,
    Subscriber,
    parse_message,
)
from edge.errors import InputError
from edge.mqtt.url import broker_from_url

DETECTIONS = {"v": 1, "ts": 1.5, "time": "1970-01-01T00:00:01.500Z", "frame_id": 7,
              "camera": "gate", "model": "m", "width": 640, "height": 480,
              "latency_ms": {"total": 5.0},
              "detections": [{"label": "star", "class_id": 3, "score": 0.9,
                              "box": [1.0, 2.0, 3.0, 4.0], "track_id": 2}]}


def _bytes(payload: dict) -> bytes:
    return json.dumps(payload).encode()


def test_every_topic_kind_is_recognised_with_its_parameters():
    cases = {
        "edge/d1/status": "status", "edge/d1/stats": "stats",
        "edge/d1/gate/detections": "detections", "edge/d1/gate/status": "camera_status",
        "edge/d1/gate/frame": "frame", "edge/d1/gate/frame/meta": "frame_meta",
        "edge/d1/gate/events": "event", "edge/d1/gate/events/17-2/snapshot": "snapshot",
        "edge/d1/gate/star/count": "count", "edge/d1/gate/door/star/count": "zone_count"}
    for topic, kind in cases.items():
        levels = topic.split("/")[2:]
        assert [k.name for k in KINDS if k.match(levels) is not None] == [kind], topic
    message = parse_message("edge/+", "edge/d1/gate/door/star/count", b"3")
    assert (message.device, message.camera, message.payload.count, message.payload.zone) == \
        ("d1", "gate", 3, "door")
    message = parse_message("edge/d1", "edge/d1/gate/detections", _bytes(DETECTIONS))
    assert isinstance(message.payload, DetectionsMessage)
    assert message.payload.detections[0].track_id == 2 and message.device == "d1"


def _with(path: str, value: object) -> dict:
    payload = json.loads(json.dumps(DETECTIONS))
    target = payload
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return payload


@pytest.mark.parametrize("payload, error, message", [
    (_with("detections.0.score", "0.9"), PayloadError,
     "edge/d1/gate/detections: detections.0.score: Input should be a valid number (got '0.9')"),
    (_with("frame_id", KeyError), PayloadError,
     "edge/d1/gate/detections: frame_id: Field required"),
    (_with("detections.0.box", [1, 2, 3]), PayloadError, "detections.0.box: List should have at "
                                                         "least 4 items"),
    (_with("v", 2), FutureVersionError, "v: contract version 2 is newer than this client's (1); "
                                        "upgrade edge-runtime"),
    (b"{not json", PayloadError, "edge/d1/gate/detections: payload is not JSON"),
    (b" ", PayloadError, "edge/d1/gate/detections: payload is empty"),
    (b"[1, 2]", PayloadError, "payload: expected a JSON object; got list"),
    (b'{"v": 1, "camera": "g\xe9"}', PayloadError,
     "payload is not UTF-8 text (byte 0xe9 at offset 21)"),
    (b"[" * 200_000, PayloadError, "payload is JSON nested too deeply to read"),
    (b"{\"v\": " + b"1" * 5000 + b"}", PayloadError, "payload holds an integer of over 4,300"),
    # user checks: NaN and Infinity (not JSON; Python's json writes and reads them), a box
    # with its corners swapped and a payload of another camera than its topic's were taken
    (_with("ts", float("nan")), PayloadError, "ts: Input should be a finite number (got nan)"),
    (_with("detections.0.score", float("inf")), PayloadError,
     "detections.0.score: Input should be a finite number"),
    (_with("detections.0.box", [10, 10, 5, 50]), PayloadError,
     "detections.0.box: x2 < x1 or y2 < y1: expected x1 y1 x2 y2, top-left corner first "
     "(got [10, 10, 5, 50])"),
    (_with("camera", "lot"), PayloadError, "camera: 'lot', but the topic is of camera 'gate'"),
])
def test_contract_violations_name_topic_and_field(payload, error, message):
    raw = payload if isinstance(payload, bytes) else _bytes(payload)
    with pytest.raises(error) as caught:
        parse_message("edge/+", "edge/d1/gate/detections", raw)
    assert message in str(caught.value) and caught.value.topic == "edge/d1/gate/detections"


def test_a_huge_malformed_payload_is_refused_quickly_in_a_few_words():
    """A user check: an 8 MB list of bad detections held every subscriber for a minute, took
    gigabytes and made a 164 MB warning line."""
    listed = _bytes({**DETECTIONS, "detections": [{"a": 1}] * 300_000})  # 2.7 MB
    oversized = b" " * (5 * 2**20)
    said = {}
    for name, payload in (("listed", listed), ("oversized", oversized)):
        began = time.perf_counter()
        with pytest.raises(PayloadError) as caught:
            parse_message("edge/+", "edge/d1/gate/detections", payload)
        assert time.perf_counter() - began < 2.0  # a bound on runaway work, not a benchmark
        said[name] = str(caught.value)
    assert said["listed"] == ("edge/d1/gate/detections: detections: List should have at most "
                              "10000 items after validation, not 300000 (got [{'a': 1}, "
                              "{'a': 1}, {'a': 1}, {'a': 1}, {'a': 1}, {'a': 1}, {'a': 1}, "
                              "{'a': ...)")
    assert said["oversized"] == ("edge/d1/gate/detections: payload is 5.0 MiB; no JSON message "
                                 "of the contract comes near 4 MiB")
    problems = _bytes({"v": 1, "detections": [{"a": 1}] * 3})
    with pytest.raises(PayloadError, match=r"; and \d+ more problems$"):
        parse_message("edge/+", "edge/d1/gate/detections", problems)


def test_additive_fields_are_kept_not_rejected():
    payload = _with("detections.0.colour", "red")
    payload["weather"] = "sunny"
    parsed = parse_message("edge/+", "edge/d1/gate/detections", _bytes(payload)).payload
    assert parsed.model_extra == {"weather": "sunny"}


@pytest.mark.parametrize("topic, payload, message", [
    ("edge/d1/gate/star/count", b"-1", "count: expected a non-negative integer; got '-1'"),
    # a user check: too long a count was said not to be a non-negative integer
    ("edge/d1/gate/star/count", b"1" * 5000,
     r"count: an integer of 5000 digits, past any count \(the contract's have at most 18\)"),
    ("edge/d1/gate/star/count", "²".encode(), "count: expected a non-negative integer"),
    ("edge/d1/gate/frame", b"PNG", "payload is not a JPEG"),
    ("edge/d1/gate/elsewhere/x/y/z", b"{}", "not a topic of contract v1"),
])
def test_non_json_kinds_and_unknown_topics(topic, payload, message):
    with pytest.raises(PayloadError, match=message):
        parse_message("edge/+", topic, payload)


@pytest.mark.parametrize(("prefix", "topic"), [
    ("edge/d2", "edge/d1/gate/detections"), ("edge/+", "other/d1/gate/detections"),
    ("site/edge/+", "edge/d1/gate/detections")])
def test_a_topic_outside_the_prefix_is_refused_however_right_its_payload(prefix, topic):
    """A user check: `parse_message("edge/dev-b", "edge/dev-a/status", ...)` returned
    device dev-a's status, and `edge/+` took `other/...` as a device's."""
    assert parse_message("edge/d1", "edge/d1/gate/detections", _bytes(DETECTIONS)).device == "d1"
    with pytest.raises(PayloadError, match=re.escape(f"{topic}: not under the prefix {prefix}")):
        parse_message(prefix, topic, _bytes(DETECTIONS))


@pytest.mark.parametrize("url, host, port, tls", [
    ("mqtt://broker", "broker", 1883, False), ("mqtts://broker", "broker", 8883, True),
    ("mqtts://broker:9999", "broker", 9999, True), ("mqtt://u:p%40ss@h:1", "h", 1, False)])
def test_one_url_parser_with_tls_default_port(url, host, port, tls):
    broker = broker_from_url(url)
    assert (broker.host, broker.port, broker.tls) == (host, port, tls)


@pytest.mark.parametrize("url", ["http://broker", "mqtt://", "mqtt://h:notaport", "broker:1883",
                                 "mqtt://127.0.0.1:", "mqtt://h:70000", "mqtt://h:0",
                                 "mqtts://h:00"])
def test_bad_urls_are_input_errors(url):
    """`mqtt://127.0.0.1:` (the port left out) was taken as 1883, in silence, and port 0 was
    tried for ever (user checks)."""
    with pytest.raises(InputError, match="broker URL"):
        Subscriber(url)


def test_bad_kinds_and_prefix_are_input_errors():
    with pytest.raises(InputError, match=r"unknown message kind.*known: status"):
        Subscriber("mqtt://h", kinds=["detection"])
    for prefix in ("edge/#", "edge/gate+", "edge/+/cam1", "+/+", "edge/", "edge//gate"):
        with pytest.raises(InputError, match=f"prefix '{re.escape(prefix)}'"):
            Subscriber("mqtt://h", prefix=prefix)
    for prefix in ("edge/+", "edge/gate-01", "site/edge/+"):
        assert Subscriber("mqtt://h", prefix=prefix).prefix == prefix
    # a user check: an empty level got the general advice, without naming what made it
    for prefix, named in (("/edge/gate-01", "a leading '/' (an empty first level)"),
                          ("edge//gate", "'//' (an empty level between)"),
                          ("edge/gate/", "a trailing '/' (an empty last level)")):
        with pytest.raises(InputError, match=re.escape(f"prefix '{prefix}' has {named}: use")):
            Subscriber("mqtt://h", prefix=prefix)


def test_one_kind_may_be_a_string_and_on_invalid_is_checked():
    """A user check: kinds="event" was split into letters ("unknown message kind(s) e, n,
    t, v"); on_invalid="bogus" was taken, and acted as "warn"."""
    assert sorted(Subscriber("mqtt://h", kinds="event").connection.filters) == [
        ("edge/+/+/events", 1), ("edge/+/+/status", 0), ("edge/+/status", 0)]
    with pytest.raises(InputError, match=r"on_invalid='bogus': give 'warn' .* or 'raise'"):
        Subscriber("mqtt://h", on_invalid="bogus")  # type: ignore[arg-type]


@pytest.mark.parametrize(("arguments", "message"), [
    ({"kinds": []}, r"kinds is empty: this subscriber would receive nothing; give one or more "
                    r"of status, "),
    ({"kinds": 5}, r"kinds=5: give message kind names, one as a string or several in a list"),
    ({"callback": 5}, r"callback=5 is not callable: give a function that takes one argument"),
    ({"on_error": "log"}, r"on_error='log' is not callable"),
])
def test_arguments_that_would_fail_later_are_refused_at_once(arguments, message):
    """A user check: kinds=[] was taken and the subscriber never yielded a message; callback=5
    was taken and failed with a traceback on every message; kinds=5 was a bare TypeError.
    `InputError` comes with `edge.client`, so a program catches it from there."""
    with pytest.raises(edge_client.InputError, match=message):
        Subscriber("mqtt://h", **arguments)
    assert edge_client.InputError is InputError and issubclass(InputError, edge_client.EdgeError)


@pytest.mark.parametrize("on_invalid", ["warn", "raise"])
def test_a_prefix_a_level_off_is_named_whatever_kinds_are_asked_for(mosquitto, caplog,
                                                                    on_invalid):
    """A user check: with kinds=["detections", "event"] and prefix "edge", the subscription
    matched no topic and the client said nothing. The statuses are read to check the prefix;
    a valid one is not delivered, not being asked for."""
    _publish(mosquitto.port, "edge/d2/status", _bytes(STATUS), retain=True)
    errors: list[PayloadError] = []
    try:
        with Subscriber(mosquitto.url, "edge", kinds=["detections", "event"],
                        on_invalid=on_invalid, callback=lambda m: None,
                        on_error=errors.append) as wrong:
            assert wrong.wait_subscribed(10)
            deadline = time.monotonic() + 5
            while wrong.misplaced is None and time.monotonic() < deadline:
                time.sleep(0.05)
        received: list[Message] = []
        with Subscriber(mosquitto.url, "edge/d2", kinds=["event"],
                        callback=received.append) as right:
            assert right.wait_subscribed(10)
            time.sleep(0.5)
    finally:
        _publish(mosquitto.port, "edge/d2/status", b"", retain=True)
    assert wrong.misplaced is not None and "the prefix 'edge' stops before the device level; " \
        "use edge/+ for every device or edge/d2 for this one" in wrong.misplaced
    if on_invalid == "raise":
        assert [str(e.problem) for e in errors] == [wrong.misplaced]
    else:
        assert "the prefix does not fit the topics" in caplog.text and not errors
    assert right.misplaced is None and received == [] and not right.counts and not right.invalid


def test_tls_files_with_a_plain_mqtt_url_are_refused_not_ignored(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not read")
    with pytest.raises(InputError, match=r"ca_file= given, but the URL is mqtt:// \(no TLS\)"):
        Subscriber("mqtt://h", ca_file=str(ca))
    with pytest.raises(InputError, match=r"certfile= and keyfile= given, but the URL is mqtt://"):
        Subscriber("mqtt://h", certfile=str(ca), keyfile=str(ca))


def _publish(port: int, topic: str, payload: bytes, retain: bool = False) -> None:
    publish.single(topic, payload, qos=1, retain=retain, hostname="127.0.0.1", port=port)


def test_iterator_style_raises_invalid_messages_and_keeps_going(mosquitto):
    with Subscriber(mosquitto.url, "edge/+", ["detections"], on_invalid="raise") as client:
        assert client.wait_subscribed(10)
        _publish(mosquitto.port, "edge/a/gate/detections", b"{bad")
        _publish(mosquitto.port, "edge/b/gate/detections", _bytes(DETECTIONS))
        with pytest.raises(PayloadError, match="edge/a/gate/detections: payload is not JSON"):
            client.get(timeout=5)
        message = client.get(timeout=5)
        assert message is not None and message.device == "b" and client.invalid == 1
        assert client.get(timeout=0.2) is None


def test_an_on_error_that_raises_is_logged_each_time_and_delivery_goes_on(mosquitto, caplog):
    """A user check: the first exception from on_error was logged by the network layer as one
    that later ones are only counted under; the next two left no trace."""
    taken: list[Message] = []

    def on_error(error: PayloadError) -> None:
        raise RuntimeError(f"dashboard bug on {error.topic}")

    with Subscriber(mosquitto.url, "edge/+", ["detections"], on_invalid="raise",
                    callback=taken.append, on_error=on_error) as client:
        assert client.wait_subscribed(10)
        for _ in range(3):
            _publish(mosquitto.port, "edge/a/gate/detections", b"{bad")
        _publish(mosquitto.port, "edge/b/gate/detections", _bytes(DETECTIONS))
        deadline = time.monotonic() + 5
        while not taken and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [m.device for m in taken] == ["b"] and client.invalid == 3
    assert caplog.text.count("the subscriber's on_error failed on edge/a/gate/detections") == 3
    assert caplog.text.count("RuntimeError: dashboard bug on edge/a/gate/detections") == 3


def test_a_callback_subscriber_has_no_iterator_to_wait_on():
    """A user check: get() on a callback subscriber waited out its timeout, and a for loop
    would have waited for ever, with no word of why."""
    client = Subscriber("mqtt://127.0.0.1:1", "edge/d1", callback=lambda message: None)
    with pytest.raises(InputError, match=r"hands its messages to its callback, so get\(\) and "
                                         r"iterating would wait for ever; make one without "
                                         r"callback="):
        client.get(timeout=2)
    with pytest.raises(InputError, match="hands its messages to its callback"):
        next(iter(client))


def test_a_stopped_subscriber_starts_again_and_its_iterator_goes_on(mosquitto):
    """A user check: started again after stop, it said it was subscribed, the messages piled
    up in its queue, and get() and for returned at once with nothing."""
    client = Subscriber(mosquitto.url, "edge/d1", ["detections"])
    for round_ in range(2):
        with client:
            assert client.wait_subscribed(10)
            _publish(mosquitto.port, "edge/d1/gate/detections",
                     _bytes({**DETECTIONS, "frame_id": round_}))
            message = client.get(timeout=5)
            assert message is not None and message.payload.frame_id == round_
    assert client.get(timeout=0.2) is None  # stopped again: nothing to wait for


def test_a_persistent_session_started_again_gets_what_it_had_not_taken_once(mosquitto):
    """What the first connection received and left in the queue is not handed over on the
    second (its acknowledgement belonged to the first): the broker sends it again, once."""
    client = Subscriber(mosquitto.url, "edge/d1", ["detections"], client_id="again",
                        session_expiry_s=60)
    with client:
        assert client.wait_subscribed(10)
        _publish_many(mosquitto.port, "edge/d1/gate/detections",
                      [_bytes({**DETECTIONS, "frame_id": i}) for i in range(6)])
        deadline = time.monotonic() + 5
        while client._queue.qsize() < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        first = client.get(timeout=5)
    assert first is not None and first.payload.frame_id == 0
    taken = []
    with client:
        assert client.wait_subscribed(10)
        while (message := client.get(timeout=2)) is not None:
            taken.append(message.payload.frame_id)
    assert taken == [1, 2, 3, 4, 5]


def test_a_cleared_retained_value_is_neither_a_message_nor_invalid(mosquitto, caplog):
    """The daemon clears event snapshots past the newest per camera with empty retained
    payloads: `edge monitor` warned "payload is not a JPEG" for each and counted them as
    malformed. An empty payload where a message is never retained stays invalid."""
    snapshot = "edge/d/gate/events/1796287954290-119/snapshot"
    with Subscriber(mosquitto.url, "edge/+", ["snapshot", "detections"],
                    on_invalid="raise") as client:
        assert client.wait_subscribed(10)
        _publish(mosquitto.port, snapshot, b"\xff\xd8jpeg", retain=True)
        _publish(mosquitto.port, snapshot, b"", retain=True)  # cleared
        _publish(mosquitto.port, "edge/d/gate/detections", b"")
        first = client.get(timeout=5)
        assert first is not None and first.kind == "snapshot"
        with pytest.raises(PayloadError, match="edge/d/gate/detections: payload is empty; "
                                               "every message of this kind is a JSON object"):
            client.get(timeout=5)
        assert client.get(timeout=0.3) is None
    assert client.cleared == 1 and client.invalid == 1
    assert "not a JPEG" not in caplog.text


def test_a_subscriber_that_hears_nothing_says_what_that_usually_means(mosquitto, caplog):
    """A user check: a subscriber to a device id that never ran waited without a word for
    as long as it ran (`edge monitor` says so after 5 s); one that hears anything, a device's
    retained status, says nothing of silence."""
    _publish(mosquitto.port, "edge/d1/gate/star/count", b"2", retain=True)
    try:
        with (caplog.at_level("WARNING", logger="edge.client.subscriber"),
              Subscriber(mosquitto.url, "edge/nope", silence_hint_s=1.0) as quiet,
              Subscriber(mosquitto.url, "edge/d1", silence_hint_s=1.0) as heard):
            assert quiet.get(timeout=2.5) is None
            assert heard.get(timeout=0.1) is not None
    finally:
        _publish(mosquitto.port, "edge/d1/gate/star/count", b"", retain=True)
    for wrong in (0, -1.0, "10", True):
        with pytest.raises(InputError, match=re.escape(f"silence_hint_s={wrong!r}: give the "
                                                       "seconds of silence")):
            Subscriber(mosquitto.url, "edge/nope", silence_hint_s=wrong)
    said = [r.getMessage() for r in caplog.records if "nothing under" in r.getMessage()]
    assert said == ["nothing under edge/nope after 1 s: a daemon leaves its status retained "
                    "there, so a prefix that names a device that ran shows it at once; check "
                    "the prefix (edge/<device_id>, edge/+ for every device, or the daemon's "
                    "mqtt.prefix), and that the device has reached this broker (its mqtt.url; "
                    "the daemon's log says why it does not)"], said


def test_a_subscriber_to_a_device_that_is_not_there_names_those_beside_it(mosquitto, caplog):
    """Nothing under `edge/gate-0l` while gate-01 is there: the devices beside it are named
    (read on a connection of the hint's own: the subscriber gets no message from the look)."""
    status = {"v": 1, "state": "online", "version": "0.1", "model": "det",
              "cameras": ["gate"], "started_at": "2026-12-03T08:00:00Z"}
    _publish(mosquitto.port, "edge/gate-01/status", json.dumps(status).encode(), retain=True)
    try:
        with (caplog.at_level("WARNING", logger="edge.client.subscriber"),
              Subscriber(mosquitto.url, "edge/gate-0l", silence_hint_s=1.0) as quiet):
            assert quiet.get(timeout=3.0) is None
            assert quiet.heard == 0 and not quiet.counts
    finally:
        _publish(mosquitto.port, "edge/gate-01/status", b"", retain=True)
    said = [r.getMessage() for r in caplog.records if "nothing under" in r.getMessage()]
    assert said == ["nothing under edge/gate-0l after 1 s and no device's status is there; "
                    "the devices under edge/+ are gate-01 (online): the prefix "
                    "edge/<device> for one of them, edge/+ for every one"], said


def test_callback_style_skips_invalid_messages_with_a_warning(mosquitto, caplog):
    received: list[Message] = []
    failing = {"count": 0}

    def callback(message: Message) -> None:
        received.append(message)
        if len(received) == 1:
            failing["count"] += 1
            raise RuntimeError("a bug in user code")

    with Subscriber(mosquitto.url, "edge/d1", ["detections", "event"],
                    callback=callback) as client:
        assert client.wait_subscribed(10)
        for payload in (_bytes(DETECTIONS), _bytes(_with("v", 9)), _bytes(DETECTIONS)):
            _publish(mosquitto.port, "edge/d1/gate/detections", payload)
        _publish(mosquitto.port, "edge/d2/gate/detections", _bytes(DETECTIONS))  # other device
        deadline = time.monotonic() + 5
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(received) == 2 and failing["count"] == 1 and client.invalid == 1
    assert "contract version 9 is newer" in caplog.text
    assert "the subscriber callback failed" in caplog.text


def test_shared_subscription_splits_messages_between_group_members(mosquitto):
    members = [Subscriber(mosquitto.url, "edge/+", ["detections"], share_group="workers")
               for _ in range(2)]
    solo = Subscriber(mosquitto.url, "edge/+", ["detections"])
    for client in (*members, solo):
        client.start()
        assert client.wait_subscribed(10)
    try:
        for frame in range(20):
            _publish(mosquitto.port, "edge/d/gate/detections",
                     _bytes({**DETECTIONS, "frame_id": frame}))
        time.sleep(1.0)
        counts = [client.counts["detections"] for client in members]
        assert sum(counts) == 20 and all(c > 0 for c in counts)  # each message to one member
        assert solo.counts["detections"] == 20
        assert members[0].connection.protocol == 5  # MQTT 5 with Mosquitto
    finally:
        for client in (*members, solo):
            client.stop()


def test_subscriber_reconnects_after_a_broker_restart(mosquitto):
    with Subscriber(mosquitto.url, "edge/+", ["detections"]) as client:
        assert client.wait_subscribed(10)
        mosquitto.stop()
        deadline = time.monotonic() + 5
        while client.connection.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        mosquitto.start()
        assert client.wait_subscribed(15)
        _publish(mosquitto.port, "edge/d/gate/detections", _bytes(DETECTIONS))
        message = client.get(timeout=5)
        assert message is not None and client.connection.connects == 2


def _live_config(tmp_path: Path, model: Path, port: int) -> Path:
    config = tmp_path / "edge.toml"
    config.write_text(f"""
device_id = "live"
[model]
path = "{model}"
threads = 1
[[cameras]]
name = "gate"
source = "synthetic://shapes?fps=10&seed=1"
[[cameras.zones]]
name = "left"
points = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]
units = "normalised"
[mqtt]
url = "mqtt://127.0.0.1:{port}"
[frames]
interval_s = 1
[stats]
interval_s = 1
[tracking]
update_interval_s = 1
[homeassistant]
enabled = true
""")
    return config


@pytest.mark.slow
def test_every_topic_of_a_live_run_parses_with_zero_validation_errors(tmp_path, mosquitto,
                                                                      demo_model):
    errors: list[PayloadError] = []
    seen: dict[str, int] = {}
    events: list[Event] = []
    lock = threading.Lock()

    def callback(message: Message) -> None:
        with lock:
            seen[message.kind] = seen.get(message.kind, 0) + 1
            if isinstance(message.payload, Event):
                events.append(message.payload)

    with Subscriber(mosquitto.url, "edge/+", callback=callback, on_invalid="raise",
                    on_error=errors.append) as client:
        assert client.wait_subscribed(10)
        daemon = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config",
                                   str(_live_config(tmp_path, demo_model, mosquitto.port)),
                                   "--seconds", "8"], stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while "detections" not in seen and time.monotonic() < deadline:
            time.sleep(0.1)
        _publish(mosquitto.port, "edge/live/cmd/snapshot", b"gate")
        _, stderr = daemon.communicate(timeout=120)
        assert daemon.returncode == 0, stderr
        time.sleep(1.0)
    assert errors == []
    # drift needs a model reference profile (<model>.drift.json); tests/test_drift covers it
    assert set(seen) == {kind.name for kind in KINDS} - {"drift"}, seen
    types = [e.type for e in events]
    assert types.count("new") == types.count("end") >= 2
    ends = [e for e in events if e.type == "end"]
    assert all(e.end is not None and e.end >= e.start for e in ends)
    assert any(e.entered_zones == ["left"] for e in events)
    assert any(e.entered_zones == [] for e in events)  # the zone is the left half, no more


STATUS = {"v": 1, "state": "online", "version": "0.1", "model": "m", "cameras": ["gate"],
          "started_at": "2026-12-03T08:00:00Z", "camera_states": {"gate": "streaming"}}


@pytest.mark.parametrize(("prefix", "fix"), [
    ("edge", r"the prefix 'edge' stops before the device level; use edge/\+ for every device "
             r"or edge/d1 for this one"),
    ("edge/d1/gate", r"the prefix 'edge/d1/gate' goes a level past the device \('gate'\); "
                     r"use edge/d1"),
    # a user check: a level that names no camera matched no topic at all, and went unsaid
    ("edge/d1/yard", r"edge/d1/status is device d1's status message: the prefix "
                     r"'edge/d1/yard' goes a level past the device \('yard'\); use edge/d1"),
    ("+", r"the prefix '\+' stops before the device level; use edge/\+ for every device or "
          r"edge/d1 for this one"),
])
@pytest.mark.parametrize("device_state", ["online", "failed"])
def test_a_prefix_a_level_off_is_named_and_nothing_is_read_under_a_wrong_kind(mosquitto, caplog,
                                                                            prefix, fix,
                                                                            device_state):
    """`edge` (the device level left out) read a device's status as a camera's and its
    counts as zone counts; `edge/d1/gate` (a camera added) read the zone as a camera. A
    device's `failed` status is a valid camera status but for the device's own fields: a
    user check saw `edge monitor --prefix edge` show "d1 camera failed"."""
    _publish(mosquitto.port, "edge/d1/status",
             _bytes({**STATUS, "state": device_state, "error": "inference failed"}), retain=True)
    _publish(mosquitto.port, "edge/d1/gate/status",
             _bytes({"v": 1, "camera": "gate", "state": "streaming",
                     "since": "2026-12-03T08:00:00Z"}), retain=True)
    received: list[Message] = []
    with Subscriber(mosquitto.url, prefix, callback=received.append) as client:
        assert client.wait_subscribed(10)
        deadline = time.monotonic() + 5
        while client.misplaced is None and time.monotonic() < deadline:
            time.sleep(0.05)
        _publish(mosquitto.port, "edge/d1/gate/count/star", b"3")
        _publish(mosquitto.port, "edge/d1/gate/left/count/star", b"2")
        time.sleep(0.5)
    assert client.misplaced is not None and re.search(fix, client.misplaced), client.misplaced
    assert [m.kind for m in received if m.kind in ("count", "zone_count")] == []
    errors = [r.getMessage() for r in caplog.records
              if r.levelname == "ERROR" and r.name == "edge.client.subscriber"]
    assert len(errors) == 1 and re.search(fix, errors[0])
    assert "skipping a message" not in caplog.text
    for topic in ("edge/d1/status", "edge/d1/gate/status"):
        _publish(mosquitto.port, topic, b"", retain=True)


@pytest.mark.parametrize(("payload", "problem"), [
    ({"camera": "yard", "state": "streaming"},
     "camera: 'yard', but the topic is the status of camera 'gate'"),
    ({**STATUS, "state": "failed"}, r"a device's status \(cameras, model, started_at, "
                                    r"version\) on the status topic of camera 'gate'"),
])
def test_a_camera_status_of_another_camera_is_refused(payload, problem):
    with pytest.raises(PayloadError, match=problem):
        parse_message("edge/d1", "edge/d1/gate/status", _bytes(payload))


def test_a_message_too_deep_to_parse_is_skipped_and_later_ones_still_arrive(mosquitto, caplog):
    """`[[[[...` raised RecursionError inside paho's network thread, which ended it: the
    subscriber (and `edge monitor`) then received nothing more, without a word."""
    received: list[Message] = []
    with Subscriber(mosquitto.url, "edge/d1", ["detections"], callback=received.append) as client:
        assert client.wait_subscribed(10)
        _publish(mosquitto.port, "edge/d1/gate/detections", b"[" * 200_000)
        _publish(mosquitto.port, "edge/d1/gate/detections", _bytes(DETECTIONS))
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [m.payload.frame_id for m in received] == [7]
    assert client.invalid == 1 and client.connection.unhandled == 0
    assert "nested too deeply" in caplog.text


def test_a_receiver_that_raises_does_not_end_the_network_thread(mosquitto, caplog):
    from edge.mqtt.subscriber import BrokerSubscription

    topics: list[str] = []

    def receiver(topic: str, payload: bytes, retained: bool) -> None:
        topics.append(topic)
        if payload == b"boom":
            raise ValueError("a bug")

    connection = BrokerSubscription(mosquitto.url, [("t/#", 1)], receiver)
    connection.start()
    try:
        assert connection.subscription_failure(10) is None
        for payload in (b"boom", b"boom", b"ok"):
            _publish(mosquitto.port, "t/x", payload)
        deadline = time.monotonic() + 5
        while len(topics) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        connection.stop()
    assert len(topics) == 3 and connection.unhandled == 2
    assert caplog.text.count("could not be handled") == 1


def test_a_malformed_device_status_under_the_right_prefix_is_only_invalid(mosquitto, caplog):
    """`{"state": "failed"}` on edge/d1/status is a valid camera status one level up (device
    `edge`, camera `d1`): it was taken for a prefix a level off, and from then on every
    message was dropped. It names no camera, so it is one invalid message, skipped."""
    _publish(mosquitto.port, "edge/d1/status", _bytes({"state": "failed"}), retain=True)
    received: list[Message] = []
    try:
        with Subscriber(mosquitto.url, "edge/d1", callback=received.append) as client:
            assert client.wait_subscribed(10)
            _publish(mosquitto.port, "edge/d1/gate/detections", _bytes(DETECTIONS))
            deadline = time.monotonic() + 5
            while not received and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        _publish(mosquitto.port, "edge/d1/status", b"", retain=True)
    assert client.misplaced is None and client.invalid == 1
    assert [m.kind for m in received] == ["detections"]
    assert "skipping a message: edge/d1/status (retained): v: Field required" in caplog.text


@pytest.mark.parametrize("mqtt5", [True, False])
def test_a_persistent_session_gets_what_was_published_while_it_was_away(mosquitto, mqtt5):
    """By default a subscriber that reconnects after the daemon published misses those
    messages; with a client id and a session expiry the broker queues them for it."""
    def connect(persistent: bool) -> Subscriber:
        client = Subscriber(mosquitto.url, "edge/d1", ["detections"], client_id=f"watch-{mqtt5}",
                            session_expiry_s=60 if persistent else 0, mqtt5=mqtt5).start()
        assert client.wait_subscribed(10)
        return client

    for persistent in (False, True):
        connect(persistent).stop()
        _publish(mosquitto.port, "edge/d1/gate/detections",
                 _bytes({**DETECTIONS, "frame_id": 100 + persistent}))
        client = connect(persistent)
        try:
            message = client.get(timeout=1.5)
        finally:
            client.stop()
        if persistent:
            assert message is not None and message.payload.frame_id == 101
        else:
            assert message is None


def test_a_persistent_session_needs_a_client_id():
    with pytest.raises(InputError, match=r"a persistent session .* needs a fixed client id"):
        Subscriber("mqtt://h", session_expiry_s=60)
    with pytest.raises(InputError, match="session expiry -1 s"):
        Subscriber("mqtt://h", client_id="me", session_expiry_s=-1)


def test_a_persistent_session_for_qos_0_kinds_alone_is_warned_about(caplog):
    """A user check: a session for frames was taken without a word, though a broker queues
    no QoS 0 message for it."""
    Subscriber("mqtt://h", kinds=["frame", "frame_meta"], client_id="me", session_expiry_s=60)
    assert "session_expiry_s=60 keeps nothing for kinds frame, frame_meta: they are QoS 0" \
        in caplog.text
    caplog.clear()
    Subscriber("mqtt://h", kinds=["frame", "event"], client_id="me", session_expiry_s=60)
    Subscriber("mqtt://h", kinds=["frame"])
    assert "keeps nothing" not in caplog.text


@pytest.mark.parametrize("expiry", [2**32, 1.5, "60", None])
def test_a_session_expiry_mqtt_cannot_carry_is_refused_before_connecting(expiry):
    """A user check: these reached paho's network thread and ended it (struct.error,
    TypeError), so the subscriber never connected, without a word."""
    with pytest.raises(InputError, match=r"session expiry .* \(at most 4294967295\)"):
        Subscriber("mqtt://h", client_id="me", session_expiry_s=expiry)


@pytest.mark.parametrize("size", [0, -1, 2.5])
def test_a_queue_size_below_one_is_refused(size):
    with pytest.raises(InputError, match=f"queue size {size}: give a whole number"):
        Subscriber("mqtt://h", queue_size=size)


def _publish_many(port: int, topic: str, payloads: list[bytes]) -> None:
    publish.multiple([{"topic": topic, "payload": p, "qos": 1} for p in payloads],
                     hostname="127.0.0.1", port=port)


@pytest.mark.parametrize(("mqtt5", "queue_size"), [(True, 5), (False, 20)])
def test_a_slow_reader_of_a_persistent_session_loses_no_message(mosquitto, mqtt5, queue_size,
                                                                caplog):
    """A user check: a persistent session whose application fell behind lost messages in
    silence (the full queue dropped them, and acknowledged them to the broker). The network
    thread now waits for room, so the broker holds the rest (mosquitto 2.0.11 does not keep
    to the Receive Maximum the subscriber asks for: that alone is not enough)."""
    with Subscriber(mosquitto.url, "edge/d1", ["detections"], client_id=f"slow-{mqtt5}",
                    session_expiry_s=60, mqtt5=mqtt5, queue_size=queue_size) as client:
        assert client.wait_subscribed(10)
        _publish_many(mosquitto.port, "edge/d1/gate/detections",
                      [_bytes({**DETECTIONS, "frame_id": i}) for i in range(60)])
        time.sleep(1.0)  # as many as the broker sends have arrived
        taken = []
        while (message := client.get(timeout=2)) is not None:
            taken.append(message.payload.frame_id)
    assert taken == list(range(60)) and client.overflow == 0
    assert "dropped" not in caplog.text
    # nothing is lost, so said once (it was 50 times in 60, then once a burst: a user check
    # saw 19 in 0.12 s as a reader took a backlog as fast as it could)
    assert caplog.text.count("is full; the broker holds the session's messages") <= 1


def test_a_persistent_session_that_stops_with_a_full_queue_gets_the_rest_next_time(mosquitto):
    """A user check: on the next connection the broker sent the queued messages before the
    SUBACK, the full queue held the network thread, and `wait_subscribed` said False after
    its whole timeout ("took the connection but gave no MQTT answer") on a healthy session."""
    def subscriber() -> Subscriber:
        client = Subscriber(mosquitto.url, "edge/d1", ["detections"], client_id="full",
                            session_expiry_s=60, queue_size=5).start()
        began = time.monotonic()
        assert client.wait_subscribed(10), client.connection.subscription_failure(0)
        assert time.monotonic() - began < 3
        return client

    client = subscriber()
    _publish_many(mosquitto.port, "edge/d1/gate/detections",
                  [_bytes({**DETECTIONS, "frame_id": i}) for i in range(100)])
    time.sleep(1.0)  # the queue is full and the network thread waits for room
    taken = [message.payload.frame_id for message in
             (client.get(timeout=2) for _ in range(10)) if message is not None]
    time.sleep(0.5)
    started = time.monotonic()
    client.stop()
    assert time.monotonic() - started < 3
    client = subscriber()
    try:
        while (message := client.get(timeout=2)) is not None:
            taken.append(message.payload.frame_id)
    finally:
        client.stop()
    # what was in the queue at stop, never taken, comes again first: all, in order, once
    assert taken == list(range(100))


def test_a_reader_that_only_just_keeps_up_makes_one_burst_not_one_a_message(caplog):
    """A user check: each message taken freed one place, filled at once, which ended the
    burst: 4-5 warnings a burst, each with a count of its own."""
    client = Subscriber("mqtt://127.0.0.1:1", "edge/d1", ["detections"], queue_size=4)
    message = parse_message("edge/d1", "edge/d1/gate/detections", _bytes(DETECTIONS))
    for _ in range(7):  # 4 fit, 3 dropped
        client._put(message)
    for _ in range(3):  # the reader frees one place, filled at once, then one more is dropped
        client.get(timeout=1)
        client._put(message)
        client._put(message)
    assert caplog.text.count("is full") == 1 and "dropped while" not in caplog.text
    for _ in range(3):  # caught up by half the queue: the burst is over
        client.get(timeout=1)
    client._put(message)
    assert client.overflow == 6 and caplog.text.count("is full") == 1
    assert caplog.text.count("6 message(s) dropped while the queue was full") == 1


def test_a_full_queue_drops_new_messages_and_says_so(mosquitto, caplog):
    with Subscriber(mosquitto.url, "edge/d1", ["detections"], queue_size=3) as client:
        assert client.wait_subscribed(10)
        _publish_many(mosquitto.port, "edge/d1/gate/detections",
                      [_bytes({**DETECTIONS, "frame_id": i}) for i in range(10)])
        time.sleep(1.0)
        taken = [client.get(timeout=2) for _ in range(3)]
        _publish(mosquitto.port, "edge/d1/gate/detections",
                 _bytes({**DETECTIONS, "frame_id": 10}))
        last = client.get(timeout=5)
        deadline = time.monotonic() + 2  # said by the network thread, as the message fits
        while "7 message(s) dropped" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "7 message(s) dropped while the queue was full" in caplog.text
        _publish_many(mosquitto.port, "edge/d1/gate/detections",
                      [_bytes({**DETECTIONS, "frame_id": i}) for i in range(11, 16)])
        time.sleep(1.0)
    assert [m.payload.frame_id if m else None for m in taken] == [0, 1, 2]
    assert last is not None and last.payload.frame_id == 10 and client.overflow == 9
    assert caplog.text.count("the queue of 3 is full; new messages are dropped") == 2
    # the last burst's, said at stop
    assert "2 message(s) dropped while the queue was full" in caplog.text


def test_a_persistent_session_gets_again_what_was_received_but_not_taken(mosquitto):
    """A user check: a message that had reached the client when it stopped, but that the
    application had not taken yet, was acknowledged on arrival and so lost for good."""
    def subscriber() -> Subscriber:
        client = Subscriber(mosquitto.url, "edge/d1", ["detections"], client_id="taker",
                            session_expiry_s=60).start()
        assert client.wait_subscribed(10)
        return client

    client = subscriber()
    for frame_id in (1, 2, 3):
        _publish(mosquitto.port, "edge/d1/gate/detections",
                 _bytes({**DETECTIONS, "frame_id": frame_id}))
    first = client.get(timeout=5)
    time.sleep(0.5)  # 2 and 3 have arrived, and wait in the client's queue
    client.stop()
    assert first is not None and first.payload.frame_id == 1
    client = subscriber()
    try:
        again = [client.get(timeout=5), client.get(timeout=5), client.get(timeout=0.5)]
    finally:
        client.stop()
    assert [m.payload.frame_id if m else None for m in again] == [2, 3, None]


def test_two_subscribers_with_one_client_id_are_named_as_the_likely_cause(mosquitto, caplog):
    """A user check: two subscribers given one client id took the connection from each other
    every second, each loss logged as "the broker stopped or the network dropped"."""
    first = Subscriber(mosquitto.url, "edge/d1", ["detections"], client_id="twin").start()
    second = Subscriber(mosquitto.url, "edge/d1", ["detections"], client_id="twin").start()
    try:
        deadline = time.monotonic() + 20
        while "same client id" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(5)
    finally:
        first.stop()
        second.stop()
    assert "(the broker giving no reason): is another client connected with the same client " \
           "id 'twin'? (each running subscriber needs its own client_id=; " in caplog.text
    # said once, not at every loss (one a second each, with its reconnect line)
    lines = [r.getMessage() for r in caplog.records if r.name == "edge.mqtt"]
    assert sum("connection lost" in line for line in lines) <= 6, lines
    assert sum(line.startswith("connected to") for line in lines) <= 8, lines



def test_an_event_that_ends_before_it_starts_is_refused():
    """A user check: `end` before `start` parsed; the daemon's objects are last seen after
    they are first seen, so such an event is not one of its."""
    event = {"v": 1, "type": "end", "id": "1-1", "track_id": 1, "camera": "gate",
             "label": "circle", "class_id": 0, "score": 0.5, "top_score": 0.6,
             "box": [1, 1, 2, 2], "start": 10.0, "end": 12.0, "zones": [], "entered_zones": [],
             "snapshot": None, "ts": 12.5, "time": "1970-01-01T00:00:12.500Z"}
    assert parse_message("edge/+", "edge/d1/gate/events", _bytes(event)).kind == "event"
    with pytest.raises(PayloadError, match=r"end 5\.0 is before start 10\.0"):
        parse_message("edge/+", "edge/d1/gate/events", _bytes({**event, "end": 5.0}))


@pytest.mark.parametrize(("time", "said"), [
    ("yesterday", "is no RFC 3339 date and time"),
    ("1970-01-01T00:00:01.500", "is no RFC 3339 date and time"),  # no offset: local or UTC?
    ("1970-01-01T01:00:01.500+01:00", "is not UTC"),
    ("1970-13-01T00:00:01.500Z", "is no valid time"),
    ("1970-01-01T03:00:01.500Z", "ts and time are 10800.000 s apart"),  # local time marked Z
])
def test_a_time_that_is_no_utc_moment_or_not_the_ts_is_refused(time, said):
    """A user check: any `time` string parsed. Every `time` is RFC 3339 UTC and states the
    moment `ts` states (the device writes one from the other)."""
    with pytest.raises(PayloadError, match=said):
        parse_message("edge/+", "edge/d1/gate/detections", _bytes({**DETECTIONS, "time": time}))
    for fine in ("1970-01-01T00:00:01.9Z", "1970-01-01t00:00:01.5z",  # RFC 3339 lets t, z be
                 "1970-01-01T00:00:01+00:00", "1970-01-01 00:00:01.123456789Z"):  # lower case
        good = parse_message("edge/+", "edge/d1/gate/detections",
                             _bytes({**DETECTIONS, "time": fine}))
        assert good.payload.time == fine
    status = {"v": 1, "state": "online", "version": "1", "model": "m", "cameras": ["gate"],
              "started_at": time, "ts": 1.5, "time": "1970-01-01T00:00:01.500Z"}
    if "apart" not in said:
        with pytest.raises(PayloadError, match=said):
            parse_message("edge/+", "edge/d1/status", _bytes(status))
    camera = {"state": "streaming", "since": "1970-01-01T00:00:01.500Z", "since_ts": 9000.0}
    with pytest.raises(PayloadError, match="since_ts and since are"):
        parse_message("edge/+", "edge/d1/gate/status", _bytes(camera))


def test_a_box_outside_the_source_frame_is_refused():
    """A user check: boxes past the frame parsed. Boxes are in the source frame's pixels (the
    device clips them to it); one past it by more than a pixel, such as a box left in the
    model input's pixels, is a device bug, and the error says where."""
    def detections(box: list[float]) -> bytes:
        return _bytes({**DETECTIONS, "detections": [
            {**DETECTIONS["detections"][0]}, {**DETECTIONS["detections"][0], "box": box}]})

    for box in ([0, 0, 640, 480], [-0.5, -0.5, 640.5, 480.5]):  # the frame, and rounding
        parse_message("edge/+", "edge/d1/gate/detections", detections(box))
    for box in ([0, 0, 641.5, 100], [0, 0, 100, 482], [-2, 0, 100, 100]):
        with pytest.raises(PayloadError, match=r"detections\[1\]\.box .* reaches outside "
                                               r"the 640x480 frame"):
            parse_message("edge/+", "edge/d1/gate/detections", detections(box))
    meta = {"v": 1, "camera": "gate", "frame_id": 3, "ts": 1.5,
            "time": "1970-01-01T00:00:01.500Z", "width": 64, "height": 48, "detections": 1,
            "detections_drawn": False,
            "predictions": [{"label": "a", "class_id": 0, "score": 0.9, "box": [1, 2, 30, 40]}]}
    parse_message("edge/+", "edge/d1/gate/frame/meta", _bytes(meta))
    with pytest.raises(PayloadError, match=r"below_threshold\[0\]\.box"):
        parse_message("edge/+", "edge/d1/gate/frame/meta", _bytes(
            {**meta, "below_threshold": [{"label": "a", "class_id": 0, "score": 0.2,
                                          "box": [1, 2, 320, 320]}]}))


def test_a_stray_message_that_reads_right_a_level_off_does_not_end_the_reading(mosquitto,
                                                                               caplog):
    """A helper's check: one message another client put on a camera's status topic, in the
    shape of a device's status, was taken for a prefix a level off; every later message of
    every subscriber that saw it was then dropped. After messages that read right, it is a
    stray one; before any, one that then reads right here and nowhere a level off clears it."""
    stray = _bytes({**STATUS, "state": "online"})
    with Subscriber(mosquitto.url, "edge/+", ["detections"]) as client:
        assert client.wait_subscribed(10)
        _publish(mosquitto.port, "edge/d1/gate/detections", _bytes(DETECTIONS))
        assert client.get(timeout=5) is not None
        _publish(mosquitto.port, "edge/d1/gate/status", stray)  # live, after one read right
        _publish(mosquitto.port, "edge/d1/gate/detections", _bytes({**DETECTIONS, "frame_id": 8}))
        message = client.get(timeout=5)
        assert message is not None and message.payload.frame_id == 8
        assert client.misplaced is None
    assert "the prefix does not fit" not in caplog.text
    caplog.clear()
    _publish(mosquitto.port, "edge/d1/gate/status", stray, retain=True)  # before any
    try:
        with Subscriber(mosquitto.url, "edge/+", ["detections"]) as client:
            assert client.wait_subscribed(10)
            deadline = time.monotonic() + 5
            while client.misplaced is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert client.misplaced is not None  # said: it reads as device gate's status
            _publish(mosquitto.port, "edge/d1/gate/detections", _bytes(DETECTIONS))
            message = client.get(timeout=5)
            assert message is not None and message.device == "d1"
            assert client.misplaced is None
    finally:
        _publish(mosquitto.port, "edge/d1/gate/status", b"", retain=True)
    assert "edge/d1/gate/detections reads right under edge/+: the prefix fits, and the " \
           "message taken to say otherwise was a stray one; reading on" in caplog.text


@pytest.mark.parametrize("kind", ["status", "camera_status"])
def test_one_status_kind_asked_for_is_delivered(mosquitto, kind):
    """A helper's check: kinds with one of the two status kinds delivered neither (every
    status went to the prefix check made for the kind not asked for)."""
    topics = {"status": ("edge/d1/status", _bytes(STATUS)),
              "camera_status": ("edge/d1/gate/status",
                                _bytes({"v": 1, "camera": "gate", "state": "streaming"}))}
    for topic, payload in topics.values():
        _publish(mosquitto.port, topic, payload, retain=True)
    try:
        with Subscriber(mosquitto.url, "edge/+", [kind]) as client:
            assert client.wait_subscribed(10)
            message = client.get(timeout=5)
            assert message is not None and message.kind == kind
            assert client.get(timeout=0.5) is None  # the other kind is not delivered
            assert client.misplaced is None and client.invalid == 0
    finally:
        for topic, _ in topics.values():
            _publish(mosquitto.port, topic, b"", retain=True)


def test_the_iterator_goes_on_after_an_invalid_message_it_raised(mosquitto):
    """The docstring said: iterate again to go on; `next` on the same iterator ended it."""
    with Subscriber(mosquitto.url, "edge/+", ["detections"], on_invalid="raise") as client:
        assert client.wait_subscribed(10)
        _publish(mosquitto.port, "edge/a/gate/detections", b"{bad")
        _publish(mosquitto.port, "edge/b/gate/detections", _bytes(DETECTIONS))
        iterator = iter(client)
        with pytest.raises(PayloadError):
            next(iterator)
        assert next(iterator).device == "b"
