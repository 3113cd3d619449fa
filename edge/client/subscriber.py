"""Typed subscriber: follow one device (`edge/gate-01`) or a fleet (`edge/+`), get `Message`s.

Two styles over one connection: iterate (`for message in subscriber`) or pass `callback`.
A message that breaks the contract never stops the subscriber: with `on_invalid="warn"` it is
logged and counted; with `"raise"` the iterator raises its PayloadError (iterate again to go
on) and the callback style hands it to `on_error`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Literal

from edge.client.contract import (
    KIND_NAMES,
    KINDS,
    Message,
    PayloadError,
    is_clearing,
    level_check_filters,
    misplaced_prefix,
    names_one_device,
    parse_message,
)
from edge.client.models import DeviceStatus
from edge.errors import InputError
from edge.mqtt.failures import PYTHON_CLIENT, SettingNames
from edge.mqtt.silence import SilenceHint
from edge.mqtt.subscriber import (
    MAX_RECEIVE_MAXIMUM,
    BrokerSubscription,
    check_device_prefix,
    check_session_expiry,
)
from edge.mqtt.topics import RETAINED_READ_QOS

log = logging.getLogger(__name__)

#: Seconds of nothing at all under the prefix before a warning says what it usually means.
SILENCE_HINT_S = 10.0
SILENCE_POLL_S = 0.5
#: A look beside the prefix (`devices_beside`) waits this long for the broker's grant, then
#: this long for the retained statuses that follow it.
BESIDE_GRANT_S = 3.0
BESIDE_RETAINED_S = 0.5

#: A persistent session's full queue loses nothing (the broker holds the rest), so it is said
#: at most once this long: a reader taking a backlog as fast as it can has the broker refill
#: it within milliseconds, half the queue at a time (a user check: 19 warnings in 0.12 s).
HELD_WARNING_INTERVAL_S = 60.0

OnInvalid = Literal["warn", "raise"]


class Subscriber:
    def __init__(self, url: str, prefix: str = "edge/+",
                 kinds: Iterable[str] | str = KIND_NAMES,
                 *, share_group: str | None = None, on_invalid: OnInvalid = "warn",
                 callback: Callable[[Message], None] | None = None,
                 on_error: Callable[[PayloadError], None] | None = None,
                 client_id: str = "", ca_file: str | None = None,
                 certfile: str | None = None, keyfile: str | None = None,
                 queue_size: int = 10_000, log_first_failure: bool = True,
                 log_failures: bool = True, names: SettingNames = PYTHON_CLIENT,
                 mqtt5: bool = True, session_expiry_s: int = 0,
                 on_cleared: Callable[[str], None] | None = None,
                 silence_hint_s: float | None = SILENCE_HINT_S) -> None:
        """`kinds`: names from `edge.client.contract.KINDS` (default: every topic; one name
        alone may be given as a string). With
        mqtts://, `ca_file` is the CA that signed the broker's certificate (default: the
        system's) and `certfile`/`keyfile` a client certificate (PEM). A failed connection is
        logged with its cause, once per cause, while it retries (`log_first_failure` False:
        you call `wait_subscribed` and report the first failure yourself; `log_failures`
        False: you report every change, `connection.last_failure` says why; `names`: what the
        advice calls the settings; `mqtt5` False: MQTT 3.1.1 from the start, for a broker
        that speaks nothing newer).

        Delivery: by default each connection starts a fresh session, so what the devices
        publish while this subscriber is away (restarting, or its network down) is missed;
        retained topics (statuses, counts, snapshots) are read again on reconnect, but
        detections, events and command replies are not. With a fixed `client_id` and
        `session_expiry_s` > 0 the broker keeps the subscriptions that long after a disconnect
        and queues those QoS 1 messages for the next connection under that id (up to the
        broker's queue limit, mosquitto's `max_queued_messages`); frames (QoS 0) are not
        queued. The iterator style then acknowledges a message to the broker only when `get`
        hands it over, so what was received and not yet taken at `stop` comes again next
        time (the callback style, once the callback returns or raises: a callback that
        raises is logged, and its message is not sent again). Two subscribers must not share
        one client id: each would take the session from the other.

        `silence_hint_s`: nothing at all arriving under the prefix for that long once
        subscribed is logged as a warning that says what it usually means (a device leaves
        its status retained, so a prefix naming a device that ran shows it at once: a device
        id that never ran, or a prefix a level off, shows nothing); None: not said.

        `on_cleared`: called on the network thread with the topic of each retained value
        cleared (an empty payload: a count, camera status or drift state the device no
        longer publishes, an old event's snapshot), which is no message of any kind.

        `queue_size`: how many messages the iterator style holds for you. When you take them
        more slowly than they come, newer ones are dropped (counted in `overflow`, logged once
        per burst); with a persistent session, QoS 1 messages are not: the subscriber stops
        reading from the broker until you take some, and the broker holds the rest of the
        session's messages (said at most once a minute; it is also asked to send at most
        `queue_size` unacknowledged, MQTT 5 Receive Maximum). Stopped too long (1.5x the
        30 s keep-alive), the broker drops the connection; the subscriber reconnects and is
        sent again what it had not acknowledged."""
        wanted = _checked_kinds(kinds)
        for name, function in (("callback", callback), ("on_error", on_error)):
            if function is not None and not callable(function):
                raise InputError(f"{name}={function!r} is not callable: give a function that "
                                 "takes one argument, or None")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise InputError(f"queue size {queue_size!r}: give a whole number of messages, 1 "
                             "or more")
        if silence_hint_s is not None and (isinstance(silence_hint_s, bool) or not isinstance(
                silence_hint_s, int | float) or not silence_hint_s > 0):
            raise InputError(f"silence_hint_s={silence_hint_s!r}: give the seconds of silence "
                             "before the hint, more than 0, or None for no hint")
        if on_invalid not in ("warn", "raise"):
            raise InputError(f"on_invalid={on_invalid!r}: give 'warn' (log a message that "
                             "breaks the contract and go on) or 'raise' (hand it to you as a "
                             "PayloadError)")
        self.prefix = check_device_prefix(prefix)
        self.on_invalid = on_invalid
        self._callback = callback
        self._on_error = on_error
        self._on_cleared = on_cleared
        # a persistent session's iterator acknowledges a message only once it is taken
        persistent_queue = check_session_expiry(session_expiry_s) > 0 and callback is None
        if session_expiry_s > 0 and all(kind.qos == 0 for kind in KINDS if kind.name in wanted):
            log.warning("session_expiry_s=%d keeps nothing for kinds %s: they are QoS 0, which "
                        "a broker does not queue for a session while its subscriber is away; "
                        "leave session_expiry_s out for them", session_expiry_s,
                        ", ".join(sorted(wanted)))
        self.queue_size = queue_size
        #: each with the function that acknowledges it to the broker once it is taken (with a
        #: persistent session: see `session_expiry_s`), else None
        self._queue: queue.Queue[tuple[Message | PayloadError, Callable[[], None] | None]] = \
            queue.Queue(queue_size)
        self._stopped = threading.Event()
        self.counts: Counter[str] = Counter()  # per kind
        self.invalid = 0
        self.cleared = 0  # retained values cleared (empty payloads): not messages, not invalid
        #: why the prefix is a level off (`misplaced_prefix`), once a message showed it before
        #: any read right: from then on every message is invalid, none is delivered under a
        #: wrong kind, until one reads right here and nowhere a level off
        self.misplaced: str | None = None
        self.heard = 0  # every message under the prefix, whatever it was
        self._silence = (SilenceHint(prefix, log.warning, after_s=silence_hint_s,
                                     setting="the prefix",
                                     devices_beside=lambda: devices_beside(self.connection,
                                                                           prefix))
                         if silence_hint_s is not None else None)
        self.overflow = 0  # iterator style: messages dropped because nobody read them
        self._full = False  # the queue has been full since the last message that fitted
        self._dropped_before = 0  # `overflow` when it filled
        self._held_said_at: float | None = None  # when a full queue last held the network
        # A prefix a level off shows in the devices' retained statuses, read for that alone
        # where `kinds` leaves them out: a filtered subscription under such a prefix matches
        # no topic at all, and nothing would say so.
        self._probing = {"status", "camera_status"} - set(wanted)
        filters = [(kind.filter(prefix), RETAINED_READ_QOS if kind.retained else kind.qos)
                   for kind in KINDS if kind.name in wanted or kind.name in self._probing]
        filters += [(check, RETAINED_READ_QOS) for check in level_check_filters(prefix)]
        self.connection = BrokerSubscription(url, filters, self._receive, client_id=client_id,
                                             share_group=share_group, ca_file=ca_file,
                                             certfile=certfile, keyfile=keyfile,
                                             log_first_failure=log_first_failure,
                                             log_failures=log_failures, names=names,
                                             mqtt5=mqtt5, session_expiry_s=session_expiry_s,
                                             manual_ack=persistent_queue,
                                             receive_maximum=(min(queue_size,
                                                                  MAX_RECEIVE_MAXIMUM)
                                                              if persistent_queue else 0))

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Subscriber:
        """Connect and subscribe; after `stop`, again (the iterator then goes on, and what a
        persistent session had received and not handed over comes again from the broker)."""
        if self._stopped.is_set():
            self._stopped.clear()
            self._drop_unacknowledged()
        self.connection.start()
        if self._silence is not None:
            threading.Thread(target=self._hint_silence, name="edge-subscriber-silence",
                             daemon=True).start()
        return self

    def _hint_silence(self) -> None:
        assert self._silence is not None
        while not self._silence.done and not self._stopped.wait(SILENCE_POLL_S):
            self._silence.check(self.heard, self.connection.subscribed.is_set())

    def stop(self) -> None:
        self._stopped.set()
        self.connection.stop()
        self._queue_has_room()  # the last burst's drops, said

    def _drop_unacknowledged(self) -> None:
        """Drop the queued messages a stopped connection had not acknowledged: the broker
        sends them again on the next (their acknowledgements belong to the old one)."""
        kept = []
        while True:
            try:
                item, ack = self._queue.get_nowait()
            except queue.Empty:
                break
            if ack is None:
                kept.append((item, ack))
        for entry in kept:
            self._queue.put_nowait(entry)

    def __enter__(self) -> Subscriber:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def wait_subscribed(self, timeout: float) -> bool:
        """Whether the broker granted the subscriptions within `timeout` seconds (False at
        once when the first connection attempt fails; `connection.subscription_failure`
        says why)."""
        return self.connection.subscription_failure(timeout) is None

    # -- iterator style --------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> Message | None:
        """The next message, None after `timeout` s (or once stopped). Raises PayloadError for
        an invalid message when `on_invalid="raise"`, and InputError where the messages go to
        a `callback` (none would ever come here)."""
        if self._callback is not None:
            raise InputError("this Subscriber hands its messages to its callback, so get() and "
                             "iterating would wait for ever; make one without callback= to "
                             "take them with get() or a for loop")
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopped.is_set() or not self._queue.empty():
            wait = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if wait <= 0:
                return None
            try:
                item, ack = self._queue.get(timeout=wait)
            except queue.Empty:
                continue
            if ack is not None:
                ack()
            if isinstance(item, PayloadError):
                raise item
            return item
        return None

    def __iter__(self) -> Iterator[Message]:
        return self

    def __next__(self) -> Message:
        """The next message; StopIteration once stopped. A PayloadError (`on_invalid="raise"`)
        leaves the iterator as it was: `next` again, or a new `for`, goes on."""
        message = self.get()
        if message is None:
            raise StopIteration
        return message

    # -- network thread --------------------------------------------------------------------

    def _receive(self, topic: str, payload: bytes, retained: bool) -> None:
        self.heard += 1
        # a status read for the prefix's sake alone: of a kind not asked for, or above the
        # prefix (`level_check_filters`), where no message of it can be
        below = topic.count("/") - self.prefix.count("/")
        status_kind = {1: "status", 2: "camera_status"}.get(below)
        if below <= 0 or (topic.endswith("/status") and status_kind in self._probing):
            self._probe(topic, payload)
            return
        if is_clearing(self.prefix, topic, payload):
            self._cleared(topic)
            return
        if self.misplaced is not None:  # no message is read under wrong kinds ...
            message = self._read_right_only_here(topic, payload, retained)
            if message is None:
                self.invalid += 1
                if self.on_invalid == "raise":
                    self._deliver_error(PayloadError(topic, self.misplaced))
                return
            # ... but one that reads right here and nowhere a level off shows the prefix fits
            log.warning("%s reads right under %s: the prefix fits, and the message taken to "
                        "say otherwise was a stray one; reading on", topic, self.prefix)
            self.misplaced = None
        else:
            try:
                message = parse_message(self.prefix, topic, payload, retained)
            except PayloadError as invalid:
                self.invalid += 1
                self._judge_prefix(topic, payload)
                if self.misplaced is not None:
                    self._say_misplaced(topic)
                elif self.on_invalid == "raise":
                    self._deliver_error(invalid)
                else:
                    log.warning("skipping a message: %s", invalid)
                return
        self.counts[message.kind] += 1
        if self._callback is None:
            self._put(message)
            return
        try:
            self._callback(message)
        except Exception:  # thread boundary: a bug in user code must not stop the subscriber
            log.exception("the subscriber callback failed on %s", topic)

    def _cleared(self, topic: str) -> None:
        self.cleared += 1
        if self._on_cleared is not None:
            try:
                self._on_cleared(topic)
            except Exception:  # thread boundary, as for the callback
                log.exception("the subscriber's on_cleared failed on %s", topic)

    def _probe(self, topic: str, payload: bytes) -> None:
        """A status read only to check the prefix: a valid one (or one cleared) is dropped;
        one that reads right a level off sets `misplaced`, said as any message under it."""
        if self.misplaced is not None or not payload:
            return
        try:
            parse_message(self.prefix, topic, payload)
        except PayloadError:
            self._judge_prefix(topic, payload)
            if self.misplaced is not None:  # else a malformed status, of a kind not asked for
                self._say_misplaced(topic)

    def _judge_prefix(self, topic: str, payload: bytes) -> None:
        """Set `misplaced` where a message that breaks the contract here reads right a level
        off, while no message has read right under the prefix: after one has, it is a stray
        message (another client's), which must not end the subscriber's reading."""
        if not self.counts:
            self.misplaced = misplaced_prefix(self.prefix, topic, payload)

    def _read_right_only_here(self, topic: str, payload: bytes, retained: bool
                              ) -> Message | None:
        """The message, where it reads right under the prefix and under no prefix a level off
        (proof that the prefix fits); else None."""
        try:
            message = parse_message(self.prefix, topic, payload, retained)
        except PayloadError:
            return None
        return message if misplaced_prefix(self.prefix, topic, payload) is None else None

    def _say_misplaced(self, topic: str) -> None:
        """`misplaced`, found at `topic`: handed over with on_invalid="raise", else logged."""
        assert self.misplaced is not None
        if self.on_invalid == "raise":
            self._deliver_error(PayloadError(topic, self.misplaced))
        else:
            log.error("the prefix does not fit the topics: %s", self.misplaced)

    def _deliver_error(self, error: PayloadError) -> None:
        if self._callback is None:
            self._put(error)
        elif self._on_error is not None:
            try:
                self._on_error(error)
            except Exception:  # thread boundary, as for the callback
                log.exception("the subscriber's on_error failed on %s", error.topic)
        else:
            log.error("invalid message: %s", error)

    def _put(self, item: Message | PayloadError) -> None:
        """Queue `item` for `get`. A message the broker waits to have acknowledged (persistent
        session, QoS 1) waits for room: the network thread stops reading, so the broker holds
        the rest of the session's messages; any other is dropped when the queue is full."""
        ack = self.connection.defer_ack() if self.connection.manual_ack else None
        try:
            self._queue.put_nowait((item, ack))
        except queue.Full:
            if ack is None:
                self._queue_full()
                self.overflow += 1
                return
            self._say_held()
            while not self._stopped.is_set():
                try:
                    self._queue.put((item, ack), timeout=0.2)
                    return
                except queue.Full:
                    continue
            return
        if self._queue.qsize() <= max(1, self.queue_size // 2):
            self._queue_has_room()

    def _say_held(self) -> None:
        """A persistent session's queue is full: said at most once a
        `HELD_WARNING_INTERVAL_S`."""
        now = time.monotonic()
        if self._held_said_at is None or now - self._held_said_at >= HELD_WARNING_INTERVAL_S:
            self._held_said_at = now
            log.warning("the application is not taking messages (get) as fast as they come: "
                        "the queue of %d is full; the broker holds the session's messages "
                        "until it has room (said at most once a minute)", self.queue_size)

    def _queue_full(self) -> None:
        """Said once a burst: one that ends when the reader has caught up by half the queue
        (a reader that only just keeps up frees one place at a time, each filled at once)."""
        if not self._full:
            self._full, self._dropped_before = True, self.overflow
            log.warning("the application is not taking messages (get) as fast as they come: "
                        "the queue of %d is full; new messages are dropped until it has room",
                        self.queue_size)

    def _queue_has_room(self) -> None:
        if self._full:
            self._full = False
            dropped = self.overflow - self._dropped_before
            if dropped:
                log.warning("%d message(s) dropped while the queue was full", dropped)


def _checked_kinds(kinds: Iterable[str] | str) -> list[str]:
    """`kinds` as a list of known kind names; an unknown name, none at all (a subscriber that
    would never yield a message) or something that is no list of names is an InputError."""
    known = ", ".join(KIND_NAMES)
    try:
        wanted = [kinds] if isinstance(kinds, str) else list(kinds)
    except TypeError:
        raise InputError(f"kinds={kinds!r}: give message kind names, one as a string or "
                         f"several in a list; known: {known}") from None
    if not wanted:
        raise InputError(f"kinds is empty: this subscriber would receive nothing; give one or "
                         f"more of {known} (or leave kinds out for every one)")
    unknown = sorted({str(name) for name in wanted} - set(KIND_NAMES))
    if unknown:
        raise InputError(f"unknown message kind(s) {', '.join(unknown)}; known: {known}")
    return wanted


def devices_beside(connection: BrokerSubscription, prefix: str) -> dict[str, str]:
    """The devices beside the one `prefix` names (`edge/gate-02` for `edge/gate-01`) whose
    status the broker holds, each with its state, read from the retained statuses under the
    parent level's `+` on a short connection of its own (`BrokerSubscription.sibling`).
    Empty for a prefix that names every device, and where the broker or its ACL refuses the
    look or none is there."""
    if not names_one_device(prefix):
        return {}
    base, _, named = prefix.rpartition("/")
    found: dict[str, str] = {}

    def receive(topic: str, payload: bytes, retained: bool) -> None:
        try:
            message = parse_message(f"{base}/+", topic, payload)
        except PayloadError:  # not a status of the contract's: not a device's
            return
        if isinstance(message.payload, DeviceStatus) and message.device != named:
            found[message.device] = message.payload.state

    look = connection.sibling([(f"{base}/+/status", RETAINED_READ_QOS)], receive, "look")
    look.start()
    try:
        if look.subscription_failure(BESIDE_GRANT_S) is None:
            time.sleep(BESIDE_RETAINED_S)
    finally:
        look.stop()  # its network thread ends here: `found` is complete
    return found
