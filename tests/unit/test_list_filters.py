from datetime import datetime, timedelta, timezone

import pytest

from api.errors import ApiError
from api.filters import parse_iso8601, parse_limit

UTC = timezone.utc


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2025-01-02T03:04:05Z", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02T03:04:05.678000Z", datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)),
        ("2025-01-02T03:04:05.6Z", datetime(2025, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)),
        ("2025-01-02T03:04:05.123456789Z", datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        ("2025-01-02T08:04:05+05:00", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (
            "2025-01-02T08:04:05 05:00",
            datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        ),  # '+' arrived as space
        ("2025-01-01T22:04:05-05:00", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02T08:04:05+0500", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02T03:04:05", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02", datetime(2025, 1, 2, tzinfo=UTC)),
        ("2025-01-02 03:04", datetime(2025, 1, 2, 3, 4, tzinfo=UTC)),
    ],
)
def test_iso8601_forms(text, expected):
    assert parse_iso8601(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2025-13-01T00:00:00Z",
        "2025-01-02T25:00:00Z",
        "2025-01-02T03:04:05+25:00",
        "1e9",
    ],
)
def test_iso8601_rejects(text):
    with pytest.raises(ValueError):
        parse_iso8601(text)


def test_offset_roundtrip_is_utc():
    value = parse_iso8601("2025-06-30T23:59:59.999999-00:30")
    assert value.tzinfo == UTC
    assert value == datetime(2025, 7, 1, 0, 29, 59, 999999, tzinfo=UTC)
    assert value - parse_iso8601("2025-07-01T00:29:59Z") == timedelta(microseconds=999999)


@pytest.mark.parametrize(
    "raw,expected", [(None, 100), ("", 100), ("5", 5), ("5.0", 5), ("0", 0), ("1000", 1000)]
)
def test_limit(raw, expected):
    assert parse_limit(raw) == expected


@pytest.mark.parametrize("raw", ["-1", "1001", "2.5", "abc", "nan", "inf"])
def test_limit_rejects(raw):
    with pytest.raises(ApiError) as err:
        parse_limit(raw)
    assert err.value.status == 400 and "limit" in str(err.value.message)
