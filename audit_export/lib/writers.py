"""Streaming tabular writers (CSV, JSON, XLSX) safe against formula injection.

Every export of the suite writes through these classes. They never hold the
rows in memory: CSV and JSON go straight to the binary ``stream``; XLSX uses
openpyxl's write-only mode (rows are spooled to a temporary file as XML with
inline strings, so a million rows cost no more memory than a thousand) and
the zip container is written to ``stream`` on ``close()``.

Value conversion, per format:

==============  ==========================  ===============  ==================
Python value    CSV                         JSON             XLSX
==============  ==========================  ===============  ==================
``None``        empty field                 ``null``         empty cell
``bool``        ``true`` / ``false``        ``true``/...     boolean cell
int/float       ``str(value)``              number           number cell
``Decimal``     ``str(value)``              string (exact)   number cell
``datetime``    ISO 8601 with offset        ISO 8601 + off.  date cell, naive in
                                                             ``tz`` (no offsets
                                                             in XLSX)
``date``        ``YYYY-MM-DD``              same             date cell
``str``         neutralized                 as is            plain text cell,
                                                             quote-prefixed
                                                             when dangerous
dict / list     compact JSON                nested JSON      compact JSON text
``bytes``       base64                      base64 string    base64 text
==============  ==========================  ===============  ==================

Naive datetimes are taken as UTC (Odoo stores UTC without tzinfo); ``tz``
(a zone name or ``tzinfo``, default UTC) is the zone datetimes are shown in.

Formula injection (OWASP "CSV Injection"): a text cell whose first
character is ``=``, ``+``, ``-``, ``@``, TAB or CR -- also when it follows
leading whitespace, which some spreadsheet imports trim, and in the
full-width forms Excel accepts from East Asian input -- could be evaluated
by a spreadsheet. :func:`neutralize` prefixes such text with a single quote
(CSV). In XLSX the text is stored as a plain string cell (never a formula)
with the ``quotePrefix`` style, so Excel keeps it text even when the cell is
edited; no quote is added to the value itself.
"""

import base64
import csv
import datetime as dt
import io
import json
import re
from decimal import Decimal
from zoneinfo import ZoneInfo

__all__ = [
    "FORMATS",
    "CsvWriter",
    "JsonArrayWriter",
    "WriterError",
    "XlsxWriter",
    "is_dangerous",
    "neutralize",
    "open_writer",
]

FORMATS = ("csv", "json", "xlsx")

# First characters a spreadsheet may interpret (OWASP list + full-width forms).
_TRIGGERS = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
UTC = dt.UTC

# XLSX limits (ECMA-376 / Excel specifications).
XLSX_MAX_ROWS = 1_048_576
XLSX_MAX_CELL_CHARS = 32_767
_XLSX_ILLEGAL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SHEET_TITLE_BAD_RE = re.compile(r"[\[\]:*?/\\]")


class WriterError(ValueError):
    """Bad writer configuration or a row that does not fit the header."""


def is_dangerous(text):
    """True when ``text`` would be taken as a formula by a spreadsheet."""
    if not text:
        return False
    if text[0] in _TRIGGERS:
        return True
    stripped = text.lstrip()
    return bool(stripped) and stripped[0] in _TRIGGERS


def neutralize(value):
    """Return ``value`` safe for a spreadsheet text cell.

    Strings that a spreadsheet would evaluate get a leading single quote;
    everything else (including non-strings) is returned unchanged.
    """
    if isinstance(value, str) and is_dangerous(value):
        return "'" + value
    return value


def _zone(tz):
    if tz is None:
        return UTC
    if isinstance(tz, dt.tzinfo):
        return tz
    try:
        return ZoneInfo(str(tz))
    except (KeyError, ValueError) as exc:
        raise WriterError(f"unknown time zone {tz!r}") from exc


def _aware(value, zone):
    """An aware datetime in ``zone``; naive values are taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(zone)


def _json_default_factory(zone):
    def default(value):
        if isinstance(value, dt.datetime):
            return _aware(value, zone).isoformat()
        if isinstance(value, dt.date | dt.time):
            return value.isoformat()
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, bytes | bytearray | memoryview):
            return base64.b64encode(bytes(value)).decode("ascii")
        if isinstance(value, set | frozenset | tuple):
            return list(value)
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    return default


class _BaseWriter:
    """Shared behaviour: header check, row counter, context manager."""

    def __init__(self, stream, header, tz):
        if not hasattr(stream, "write"):
            raise WriterError("stream must be a binary file object")
        self._stream = stream
        self.header = list(header) if header is not None else None
        self.zone = _zone(tz)
        self.rows = 0
        self.closed = False
        self._json_default = _json_default_factory(self.zone)

    def _check_row(self, values):
        if self.closed:
            raise WriterError("writer is closed")
        values = list(values)
        if self.header is not None and len(values) != len(self.header):
            raise WriterError(
                f"row {self.rows + 1} has {len(values)} values, "
                f"the header has {len(self.header)}"
            )
        return values

    def _compact_json(self, value):
        return json.dumps(
            value,
            ensure_ascii=False,
            sort_keys=True,
            separators=(",", ":"),
            default=self._json_default,
        )

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False


class CsvWriter(_BaseWriter):
    """RFC 4180 CSV (CRLF, minimal quoting), UTF-8, optional BOM for Excel."""

    def __init__(self, stream, header, delimiter=",", bom=False, tz=None):
        super().__init__(stream, header, tz)
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            raise WriterError("the CSV delimiter must be a single character")
        if delimiter in '"\r\n' or delimiter.isalnum():
            raise WriterError(f"{delimiter!r} cannot be a CSV delimiter")
        self.delimiter = delimiter
        # write_through: nothing lingers in the text layer between rows.
        self._text = io.TextIOWrapper(
            stream, encoding="utf-8", newline="", write_through=True
        )
        if bom:
            self._text.write("\ufeff")
        self._csv = csv.writer(
            self._text,
            delimiter=delimiter,
            quotechar='"',
            quoting=csv.QUOTE_MINIMAL,
            lineterminator="\r\n",
            doublequote=True,
        )
        if self.header is not None:
            self._csv.writerow([self._cell(h) for h in self.header])

    def _cell(self, value):
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float | Decimal):
            return str(value)
        if isinstance(value, dt.datetime):
            return _aware(value, self.zone).isoformat()
        if isinstance(value, dt.date | dt.time):
            return value.isoformat()
        if isinstance(value, bytes | bytearray | memoryview):
            return base64.b64encode(bytes(value)).decode("ascii")
        if isinstance(value, dict | list | tuple):
            return neutralize(self._compact_json(value))
        return neutralize(str(value))

    def writerow(self, values):
        values = self._check_row(values)
        self._csv.writerow([self._cell(v) for v in values])
        self.rows += 1

    def close(self):
        """Flush; the underlying ``stream`` stays open (the caller owns it)."""
        if self.closed:
            return
        self._text.flush()
        self._text.detach()
        self.closed = True


class JsonArrayWriter(_BaseWriter):
    """A JSON array written one item at a time (one item per line).

    ``write(dict)`` appends an object; ``writerow(values)`` maps the values
    onto ``header`` first (so it is interchangeable with the other writers).
    """

    def __init__(self, stream, header=None, tz=None):
        super().__init__(stream, header, tz)
        self._stream.write(b"[")

    def write(self, item):
        if self.closed:
            raise WriterError("writer is closed")
        data = json.dumps(
            item,
            ensure_ascii=False,
            default=self._json_default,
            allow_nan=False,
        )
        prefix = b"\n" if not self.rows else b",\n"
        self._stream.write(prefix + data.encode("utf-8"))
        self.rows += 1

    def writerow(self, values):
        if self.header is None:
            raise WriterError("writerow() needs a header; use write(dict)")
        values = self._check_row(values)
        self.write(dict(zip(self.header, values, strict=True)))

    def close(self):
        if self.closed:
            return
        self._stream.write(b"\n]\n" if self.rows else b"]\n")
        self.closed = True


class XlsxWriter(_BaseWriter):
    """XLSX through openpyxl's write-only mode, with typed cells.

    Rows beyond Excel's 1,048,576 limit continue on a new sheet (with the
    header repeated). Text longer than Excel's 32,767 characters is cut with
    a visible ``[... N characters truncated]`` marker (use CSV or JSON for
    full values); control characters XML cannot carry are written as
    ``\\xNN``.
    """

    def __init__(
        self,
        stream,
        header,
        sheet_title="Export",
        tz=None,
        datetime_format="yyyy-mm-dd hh:mm:ss",
        date_format="yyyy-mm-dd",
    ):
        super().__init__(stream, header, tz)
        from openpyxl import Workbook  # noqa: PLC0415 - only XLSX needs it
        from openpyxl.cell import WriteOnlyCell  # noqa: PLC0415
        from openpyxl.styles import Font  # noqa: PLC0415

        self._cell_cls = WriteOnlyCell
        self._bold = Font(bold=True)
        self.datetime_format = datetime_format
        self.date_format = date_format
        self._title = self._sheet_title(sheet_title)
        self._book = Workbook(write_only=True)
        self._sheets = 0
        self._sheet_rows = 0
        self._sheet = None
        self._new_sheet()

    @staticmethod
    def _sheet_title(title):
        title = _SHEET_TITLE_BAD_RE.sub("_", str(title or "Export")).strip("'")
        return title[:31] or "Export"

    def _new_sheet(self):
        self._sheets += 1
        title = self._title
        if self._sheets > 1:
            suffix = f" ({self._sheets})"
            title = title[: 31 - len(suffix)] + suffix
        self._sheet = self._book.create_sheet(title)
        self._sheet_rows = 0
        if self.header is not None:
            cells = [self._cell(h) for h in self.header]
            for cell in cells:
                cell.font = self._bold
            self._sheet.append(cells)
            self._sheet_rows += 1

    def _text(self, text):
        text = _XLSX_ILLEGAL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
        if len(text) > XLSX_MAX_CELL_CHARS:
            marker = ""
            keep = XLSX_MAX_CELL_CHARS
            for _attempt in range(3):  # the marker's length depends on the count
                marker = f"[... {len(text) - keep} characters truncated]"
                keep = XLSX_MAX_CELL_CHARS - len(marker)
            text = text[:keep] + f"[... {len(text) - keep} characters truncated]"
        return text

    def _cell(self, value):
        cell = self._cell_cls(self._sheet)
        if value is None:
            return cell
        if isinstance(value, bool | int | float | Decimal):
            cell.value = value
        elif isinstance(value, dt.datetime):
            cell.value = _aware(value, self.zone).replace(tzinfo=None)
            cell.number_format = self.datetime_format
        elif isinstance(value, dt.date):
            cell.value = value
            cell.number_format = self.date_format
        elif isinstance(value, dt.time):
            cell.value = value.replace(tzinfo=None)
        else:
            if isinstance(value, bytes | bytearray | memoryview):
                text = base64.b64encode(bytes(value)).decode("ascii")
            elif isinstance(value, dict | list | tuple):
                text = self._compact_json(value)
            else:
                text = str(value)
            text = self._text(text)
            cell.value = text
            # openpyxl infers a formula from a leading "=": force plain text.
            cell.data_type = "s"
            if is_dangerous(text):
                cell.quotePrefix = True
        return cell

    def writerow(self, values):
        values = self._check_row(values)
        if self._sheet_rows >= XLSX_MAX_ROWS:
            self._new_sheet()
        self._sheet.append([self._cell(v) for v in values])
        self._sheet_rows += 1
        self.rows += 1

    def close(self):
        """Write the workbook to ``stream`` (left open for the caller)."""
        if self.closed:
            return
        self.closed = True
        self._book.save(self._stream)


def open_writer(fmt, stream, header, **options):
    """A writer for ``fmt`` (csv, json or xlsx) on the binary ``stream``.

    ``options`` go to the writer: CSV ``delimiter``, ``bom``, ``tz``; JSON
    ``tz``; XLSX ``sheet_title``, ``tz``, ``datetime_format``,
    ``date_format``.
    """
    fmt = (fmt or "").lower()
    if fmt == "csv":
        return CsvWriter(stream, header, **options)
    if fmt == "json":
        return JsonArrayWriter(stream, header, **options)
    if fmt == "xlsx":
        return XlsxWriter(stream, header, **options)
    raise WriterError(f"unknown export format {fmt!r}; use one of {FORMATS}")
