"""Clearing what a run left retained on a broker: a tool's own topics, not a device's.

A broker sends every retained message that matches a subscription right after its SUBACK, with
the retain flag set; an empty retained message on a topic removes the one kept there. So the
topics are gathered until none has arrived for `quiet_s` (`RetainedTopics`, as the daemon's
sweeps gather theirs), then each is cleared, and the clearing waits for the broker's
acknowledgements (QoS 1).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from edge.errors import EdgeError
from edge.mqtt.subscriber import NO_TLS_FILES, BrokerSubscription, TlsFiles, unique_client_id
from edge.mqtt.sweep import RetainedTopics
from edge.redact import redact_uri
from edge.wording import counted

log = logging.getLogger(__name__)


def clear_retained(url: str, topic_filter: str, tls: TlsFiles = NO_TLS_FILES,
                   quiet_s: float = 1.0, timeout: float = 10.0) -> int:
    """Remove every retained message under `topic_filter` from the broker at `url` (its login
    and `tls` files as `edge monitor` takes them); returns how many there were. An EdgeError
    names the broker when it cannot be reached or does not acknowledge within `timeout`
    seconds."""
    gathered = RetainedTopics()
    subscription = BrokerSubscription(url, [(topic_filter, 1)], gathered.offer,
                                      client_id=unique_client_id("clear"), ca_file=tls.ca_file,
                                      certfile=tls.certfile, keyfile=tls.keyfile,
                                      log_first_failure=False)
    subscription.start()
    try:
        subscription.wait_until_subscribed()
        gathered.restart_clock()  # retained messages follow the grant
        deadline = time.monotonic() + timeout
        found = gathered.when_quiet(quiet_s, deadline)
        sent = [subscription.publish(topic, b"", qos=1, retain=True) for topic in found]
        if not all(_acknowledged(info, deadline) for info in sent):
            raise EdgeError(f"the MQTT broker at {redact_uri(url)} did not acknowledge "
                            f"clearing the retained messages under {topic_filter} within "
                            f"{timeout:g} s")
    finally:
        subscription.stop()
    return len(found)


def clear_what_a_run_left(url: str, tls: TlsFiles, prefix: str,
                          echo: Callable[[str], None]) -> int | None:
    """A tool's run on a user's broker (`edge bench --mqtt`, `edge demo --mqtt`): its retained
    device and camera status, counts, stats and snapshots under `prefix` are cleared, so it
    leaves no device behind for `edge monitor` or Home Assistant (benchmark runs added up to
    140 snapshots a camera). Returns how many, None (with a warning) if the broker did not
    take it."""
    try:
        cleared = clear_retained(url, f"{prefix}/#", tls)
    except EdgeError as exc:
        log.warning("the run's retained messages under %s stay on the broker: %s", prefix, exc)
        return None
    echo(f"cleared the {counted(cleared, 'retained message')} the run left under {prefix}/")
    return cleared


def _acknowledged(info: mqtt.MQTTMessageInfo, deadline: float) -> bool:
    try:
        info.wait_for_publish(max(0.1, deadline - time.monotonic()))
    except (ValueError, RuntimeError):  # not queued, or the connection went
        return False
    return info.is_published()
