"""A hint when nothing at all arrives under a subscriber's prefix.

A daemon leaves its status retained under its prefix, so a prefix that names a device that ever
ran shows it at once; one a level off, or a device id that never ran, matches no topic, and a
watch would otherwise look like a quiet site for as long as it ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SilenceHint:
    """Says once, through `say`, that nothing arrived under `prefix` within `after_s` seconds
    of standing subscriptions; `setting` is what the advice calls the prefix (`--prefix`, or
    `the prefix` for the library) and `user` the login, whose ACL may keep the topics from it."""

    def __init__(self, prefix: str, say: Callable[[str], None], *, after_s: float,
                 setting: str = "--prefix", user: str | None = None,
                 devices_beside: Callable[[], dict[str, str]] | None = None) -> None:
        """`devices_beside`: for a prefix that names one device, the devices beside it (the
        `+` of its parent level) that the broker holds a status of, each with its state; the
        hint names them, so a device id off by a letter shows the right one."""
        self._prefix, self._say, self._after_s = prefix, say, after_s
        self._setting, self._user = setting, user
        self._devices_beside = devices_beside
        self._started = time.monotonic()
        self.done = False  # said, or something arrived: nothing more to check

    def check(self, received: int, subscribed: bool) -> None:
        """`received`: messages so far (invalid and cleared ones too); `subscribed`: the
        subscriptions stand (the time without them does not count)."""
        if not subscribed:
            self._started = time.monotonic()
        if self.done or received:
            self.done = True
            return
        if time.monotonic() - self._started < self._after_s:
            return
        self.done = True
        acl = (f"; or the broker's ACL does not let the user {self._user!r} read there "
               "(Mosquitto's acl_file keeps such messages without a word)" if self._user else "")
        beside = self._devices_beside() if self._devices_beside is not None else {}
        if beside:
            # a login's ACL may hide the device named, and others beside it: what it reads is
            # all that can be said to be there
            absent = "" if self._user else " and no device's status is there"
            self._say(f"nothing under {self._prefix} after {self._after_s:g} s{absent}; "
                      f"{the_devices_beside(self._prefix, beside, self._setting, self._user)}"
                      f"{acl}")
            return
        levels = len(self._prefix.split("/"))
        if self._prefix.endswith("+"):  # every device under it already: none ever ran here
            self._say(f"nothing under {self._prefix} after {self._after_s:g} s: no device has "
                      "left its status under it on this broker, so none has reached it (their "
                      "mqtt.url; the daemon's log says why it does not), or the devices' "
                      f"mqtt.prefix differs from {self._prefix.rpartition('/')[0]}/<device_id>"
                      f"{acl}")
            return
        deeper = (f"; {self._prefix} has {levels} levels, a daemon's default prefix 2"
                  if levels > 2 else "")
        self._say(f"nothing under {self._prefix} after {self._after_s:g} s: a daemon leaves "
                  "its status retained there, so a prefix that names a device that ran "
                  f"shows it at once; check {self._setting} (edge/<device_id>, edge/+ for "
                  f"every device, or the daemon's mqtt.prefix){deeper}, and that the device "
                  "has reached this broker (its mqtt.url; the daemon's log says why it does "
                  f"not){acl}")


def the_devices_beside(prefix: str, devices: dict[str, str], setting: str = "--prefix",
                       user: str | None = None) -> str:
    """Advice naming `devices` (device -> state), there beside the one device `prefix` names,
    and the prefix for one of them or every one (`setting`: what the advice calls it; `user`:
    the login they were read with, whose ACL may hide others)."""
    base = prefix.rpartition("/")[0]
    there = ", ".join(f"{device} ({state})" for device, state in sorted(devices.items()))
    readable = f" that the user {user!r} can read" if user else ""
    return (f"the devices under {base}/+{readable} are {there}: {setting} {base}/<device> for "
            f"one of them, {base}/+ for every one")
