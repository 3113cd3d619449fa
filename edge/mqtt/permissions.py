"""What a broker's access control (ACL) keeps from this device, said instead of going unseen.

A broker refuses a subscription in its SUBACK (Mosquitto's dynamic-security plugin, EMQX,
HiveMQ), and paho reports that only to a callback: commands would get no reply and nothing
would say why. A publication the ACL denies gets no refusal at all in MQTT 3.1.1: Mosquitto's
`acl_file` acknowledges it and drops it, as it silently keeps messages from a subscriber that
may not read them. The daemon subscribes to its own status topic (edge.mqtt.rivals), so the
status it publishes at each connect comes back to it: one that does not is the ACL denying
this client writing or reading that topic.

Each refusal is said once a run, with what it costs and the fix. Used on the MQTT client's
network thread, except `check_echo` (a timer's thread), which reads one flag.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger("edge.mqtt")

#: How long after publishing its status at a connect the daemon expects it back (s); a broker
#: on the same network takes milliseconds.
ECHO_WAIT_S = 5.0


class BrokerPermissions:
    """Subscriptions the broker refused and a status that never came back, each said once."""

    def __init__(self, where: str, prefix: str) -> None:
        self._where = where  # the broker, as the connection log names it
        self._prefix = prefix
        self._pending: dict[int, tuple[str, str]] = {}  # mid -> (filter, what a refusal costs)
        self._refused: set[str] = set()  # filters refused (and said)
        self._echoed = False
        self._echo_said = False

    def subscribing(self, mid: int | None, topic_filter: str, costs: str) -> None:
        """A subscription was sent as `mid` (None: paho could not send it); `costs` says what
        is lost if the broker refuses it."""
        if mid is not None:
            self._pending[mid] = (topic_filter, costs)

    def suback(self, mid: int, reason_codes: Sequence[ReasonCode]) -> None:
        """The broker's answer to subscription `mid`: a refusal is said, once a filter."""
        topic_filter, costs = self._pending.pop(mid, ("", ""))
        if not topic_filter or not any(code.is_failure for code in reason_codes):
            return
        if topic_filter in self._refused:
            return
        self._refused.add(topic_filter)
        # MQTT 3.1.1 has one refusal code (0x80), which paho calls "Unspecified error"
        log.warning("MQTT broker %s refused the subscription to %s: %s; allow this client to "
                    "subscribe to %s/# in the broker's ACL", self._where, topic_filter, costs,
                    self._prefix)

    def connected(self) -> None:
        """A connect published the status: it is expected back."""
        self._echoed = False

    @property
    def status_came_back(self) -> bool:
        """Whether this connection's status came back (this client reads its own topics)."""
        return self._echoed

    def status_echoed(self) -> None:
        """This daemon's own status came back (now, or retained from an earlier connect)."""
        self._echoed = True

    def check_echo(self, status_topic: str, still_connected: bool,
                   waited_s: float = ECHO_WAIT_S) -> None:
        """`waited_s` after a connect: a status that has not come back is said, once."""
        if (self._echoed or not still_connected or self._echo_said
                or status_topic in self._refused):  # refused: said, and it cannot come back
            return
        self._echo_said = True
        log.warning("MQTT broker %s: this device's status (%s), published %g s ago, has not "
                    "come back though this client subscribes to it: the broker's ACL denies "
                    "this client publishing or reading it (Mosquitto acknowledges what its ACL "
                    "drops, and keeps what a client may not read without a word). Either what "
                    "it publishes there never reaches monitors or Home Assistant, or it cannot "
                    "read its own topics (commands go unanswered, what earlier runs retained "
                    "is not cleared); allow this client readwrite on %s/# in the broker's ACL",
                    self._where, status_topic, waited_s, self._prefix)

