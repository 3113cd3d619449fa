"""Reading the contract's times: RFC 3339 date-times in UTC (`2026-11-29T07:14:51.123Z`).

Apart from `edge.timing` (which writes them) so that the subscriber-only install, without
numpy, reads them the same way the daemon does.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

EXAMPLE = "2026-11-29T07:14:51.123Z"
_DATE_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}):(\d{2})(\.\d+)?"
                        r"([Zz]|[+-]\d{2}:\d{2})")


def utc_seconds(text: str) -> float:
    """Seconds since the epoch of `text`, an RFC 3339 date-time in UTC (`Z` or an offset of
    zero; `t` and `z` in either case, a leap second's `:60` read as the second after `:59`).
    A ValueError says what is wrong: no such shape, no such date, or not UTC."""
    expected = f"expected RFC 3339 UTC, like {EXAMPLE}"
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"{text[:40]!r} is no RFC 3339 date and time with its offset; "
                         f"{expected}")
    date, hours_minutes, seconds, fraction, offset = match.groups()
    leap = seconds == "60"
    # six digits, as Python 3.11 reads any number (truncated past the microsecond) and 3.10
    # only 3 or 6 (a user check: `07:14:51.1Z` was refused there)
    microseconds = f".{fraction[1:7].ljust(6, '0')}" if fraction else ""
    normal = (f"{date}T{hours_minutes}:{'59' if leap else seconds}{microseconds}"
              f"{'+00:00' if offset in 'Zz' else offset}")
    try:
        moment = datetime.fromisoformat(normal)
    except ValueError as exc:
        raise ValueError(f"{text!r} is no valid time ({exc}); {expected}") from None
    if moment.utcoffset():
        raise ValueError(f"{text!r} is not UTC; {expected}")
    return (moment + timedelta(seconds=1 if leap else 0)).timestamp()
