"""Reading dates and date-times from JSON strings, with the messages a client reads.

Shared by request validation (:mod:`domain.schema`), query parameters and the CLI.
"""

from datetime import UTC, date, datetime

DATETIME_EXAMPLE = "2025-01-31T09:30:00Z"
DATE_MESSAGE = "must be an ISO 8601 date (YYYY-MM-DD)"
DATETIME_MESSAGE = f"must be an ISO 8601 date-time, e.g. {DATETIME_EXAMPLE}"


def parse_date(text: str) -> date:
    """An ISO 8601 date. Raises ``ValueError`` with the message a client should read."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(DATE_MESSAGE) from None


def parse_datetime(text: str) -> datetime:
    """An ISO 8601 date-time with a time zone, whose UTC value lies in years
    1-9999. Raises ``ValueError`` with the message a client should read.

    The UTC check matters because every store and read model keeps UTC: a
    value such as ``0001-01-01T00:00:00+01:00`` parses, but converting it
    leaves what Python and PostgreSQL can hold, and once stored it would stop
    every projection that touches it.
    """
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(DATETIME_MESSAGE) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"must include a timezone offset, e.g. {DATETIME_EXAMPLE}")
    try:
        utc = parsed.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        utc = datetime.min
    if utc in (datetime.min, datetime.max):  # PostgreSQL drivers store these as -infinity/infinity
        raise ValueError("must lie between years 1 and 9999 once converted to UTC")
    return parsed
