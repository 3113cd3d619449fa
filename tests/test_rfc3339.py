from __future__ import annotations

import pytest

from edge.rfc3339 import utc_seconds
from edge.timing import rfc3339


def test_the_daemons_own_times_read_back_to_the_millisecond():
    for ts in (0.0, 1.5, 1_796_094_000.123, 1_796_094_000.999):
        assert utc_seconds(rfc3339(ts)) == pytest.approx(ts, abs=1e-3)


@pytest.mark.parametrize(("text", "seconds"), [
    ("2026-12-01T03:00:00Z", 1_796_094_000.0),
    ("2026-12-01t03:00:00.250z", 1_796_094_000.25),  # RFC 3339 allows lower case t and z
    ("2026-12-01 03:00:00+00:00", 1_796_094_000.0),
    ("2026-12-01T03:00:00-00:00", 1_796_094_000.0),
    ("2016-12-31T23:59:60.5Z", 1_483_228_800.5),  # a leap second: the second after :59
    # any number of digits (Python 3.10's fromisoformat takes 3 or 6; 3.11's truncates past 6)
    ("2026-12-01T03:00:00.1Z", 1_796_094_000.1),
    ("2026-12-01T03:00:00.12345Z", 1_796_094_000.12345),
    ("2026-12-01T03:00:00.123456789Z", 1_796_094_000.123456),
])
def test_rfc3339_utc_in_its_allowed_forms(text, seconds):
    assert utc_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "said"), [
    ("2026-12-01 03:00:00", "is no RFC 3339 date and time with its offset"),
    ("20261201T030000Z", "is no RFC 3339 date and time with its offset"),
    ("2026-12-01", "is no RFC 3339 date and time with its offset"),
    ("2026-02-30T03:00:00Z", r"is no valid time \(day is out of range for month\)"),
    ("2026-12-01T04:00:00+01:00", "is not UTC"),
])
def test_anything_else_is_said_to_be_no_rfc3339_utc_time(text, said):
    with pytest.raises(ValueError, match=said + ".*expected RFC 3339 UTC, like "
                                       "2026-11-29T07:14:51.123Z"):
        utc_seconds(text)
