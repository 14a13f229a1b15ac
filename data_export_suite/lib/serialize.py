"""Value conversion and batching helpers shared by the export pipelines.

Odoo hands datetimes over as naive UTC values; exports write them as ISO 8601
with an explicit offset (in the requesting user's time zone when known).
"""

import base64
import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_BATCH_SIZE = 1000


def chunked(items, size=DEFAULT_BATCH_SIZE):
    """Yield successive lists of at most ``size`` items from a sequence."""
    if size < 1:
        raise ValueError("batch size must be at least 1")
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def get_zone(tz_name):
    """Return the ZoneInfo for ``tz_name`` or UTC when empty/unknown."""
    if tz_name:
        try:
            return ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            return dt.UTC
    return dt.UTC


def aware_datetime(value, zone=dt.UTC):
    """Naive-UTC (Odoo) or aware datetime -> aware datetime in ``zone``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(zone)


def iso_datetime(value, zone=dt.UTC):
    """ISO 8601 with offset: ``2024-03-01T10:00:00+01:00`` (microseconds when
    set, like the suite's CSV writer)."""
    return aware_datetime(value, zone).isoformat()


def json_value(value, zone=dt.UTC):
    """Convert one scalar Odoo value into a JSON-ready value."""
    if value is False or value is None:
        return None
    if isinstance(value, dt.datetime):
        return iso_datetime(value, zone)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def parse_field_paths(text):
    """Split a comma/newline separated list of field paths, order kept."""
    if not text:
        return []
    seen = []
    for raw in text.replace("\n", ",").split(","):
        path = raw.strip()
        if path and path not in seen:
            seen.append(path)
    return seen


def check_path_syntax(path):
    """Raise ValueError unless ``path`` is ``name`` or ``a.b.c`` of names."""
    parts = path.split(".")
    for part in parts:
        if not part or not (part.replace("_", "a").isalnum() and part.isascii()):
            raise ValueError(f"Invalid field path: {path!r}")
        if part[0].isdigit():
            raise ValueError(f"Invalid field path: {path!r}")
    return parts


class CountingWriter:
    """File-like wrapper counting the bytes written to ``raw``."""

    def __init__(self, raw):
        self.raw = raw
        self.size = 0

    def write(self, data):
        self.raw.write(data)
        self.size += len(data)
        return len(data)

    def flush(self):
        self.raw.flush()


def safe_filename(text, default="export"):
    """A file name made of safe characters only."""
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in (text or ""))
    keep = keep.strip("._")
    return keep[:80] or default
