"""Tier 1: suite_core/writers.py, parsed back with csv, json and openpyxl."""

import csv
import datetime as dt
import enum
import gc
import io
import json
import os
import tempfile
import tracemalloc
import uuid
import zipfile
from decimal import Decimal
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from suite_core import writers
from suite_core.writers import (
    CsvWriter,
    JsonArrayWriter,
    WriterError,
    XlsxWriter,
    is_dangerous,
    neutralize,
    open_writer,
)

PARIS = ZoneInfo("Europe/Paris")
HEADER = ["Timestamp", "User", "Count", "Amount", "Flag", "Day", "Note", "Details"]
ROW = [
    dt.datetime(2024, 7, 1, 12, 30, 5, tzinfo=dt.UTC),
    "Mitchell Admin",
    42,
    1.5,
    True,
    dt.date(2024, 2, 29),
    None,
    {"b": 2, "a": "é"},
]


def _csv_rows(data, delimiter=","):
    text = data.decode("utf-8")
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


# -- neutralize -------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "=1+1",
        "@SUM(A1)",
        "\tcmd",
        "\rcmd",
        "\t=1",
        '  =HYPERLINK("http://x")',
        ' =HYPERLINK("http://x")',
        " \t=cmd",
        "\uff1d1+1",
        "=cmd|' /C calc'!A0",
        "+cmd|' /C calc'!A0",
        "-2+3",
        "-2+3+cmd|' /C calc'!A0",
        "+1+1",
        "-1e5",
        "\t12",
        "\r12",
        "\uff0b32 475",
        "@1",
        "+",
        "-",
        "+ ",
        "- (.)",
    ],
)
def test_neutralize_dangerous(text):
    assert is_dangerous(text)
    assert neutralize(text) == "'" + text


@pytest.mark.parametrize(
    "value",
    [
        "",
        "abc",
        "a=b",
        "1-2",
        "'=already",
        "e-mail",
        "   ",
        5,
        -5,
        None,
        1.5,
        # numbers and phone numbers cannot call a function or a DDE server
        "+32 475 12 34 56",
        "-12.5",
        "+1",
        "-1",
        " -3",
        "+1 (555) 010-9999",
        "-12/05",
        "+32\u00a0475\u00a012",
        "- 1",
        "-(0)1.5",
    ],
)
def test_neutralize_leaves_safe_values(value):
    assert neutralize(value) == value
    if isinstance(value, str):
        assert not is_dangerous(value)


def test_neutralize_str_subclass_not_reescaped():
    markupsafe = pytest.importorskip("markupsafe")
    value = markupsafe.Markup("=1+1 &amp; x")
    result = neutralize(value)
    # Markup + str would escape the quote into "&#39;": we return a plain str.
    assert type(result) is str
    assert result == "'=1+1 &amp; x"


# -- CSV --------------------------------------------------------------------


def test_csv_exact_content_rfc4180():
    out = io.BytesIO()
    with CsvWriter(out, HEADER) as w:
        w.writerow(ROW)
        w.writerow([None, 'say "hi", ok', 0, -2.25, False, None, "line1\nline2", []])
    data = out.getvalue()
    assert not data.startswith(b"\xef\xbb\xbf")
    assert data.count(b"\r\n") == 3  # records end with CRLF; "\n" in a field stays
    assert b'"say ""hi"", ok"' in data
    rows = _csv_rows(data)
    assert rows == [
        HEADER,
        [
            "2024-07-01T12:30:05+00:00",
            "Mitchell Admin",
            "42",
            "1.5",
            "true",
            "2024-02-29",
            "",
            '{"a":"é","b":2}',
        ],
        ["", 'say "hi", ok', "0", "-2.25", "false", "", "line1\nline2", "[]"],
    ]
    assert out.closed is False  # the caller owns the stream


def test_csv_delimiter_bom_and_timezone():
    out = io.BytesIO()
    w = CsvWriter(out, ["When", "Text"], delimiter=";", bom=True, tz="Europe/Paris")
    w.writerow([dt.datetime(2024, 1, 15, 8, 0), "a;b"])  # naive = UTC
    w.writerow([dt.datetime(2024, 7, 15, 8, 0, tzinfo=dt.UTC), "c"])
    w.close()
    data = out.getvalue()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = _csv_rows(data[3:], delimiter=";")
    assert rows == [
        ["When", "Text"],
        ["2024-01-15T09:00:00+01:00", "a;b"],
        ["2024-07-15T10:00:00+02:00", "c"],
    ]
    assert b'"a;b"' in data


def test_csv_injection_neutralized_in_cells_and_header():
    out = io.BytesIO()
    with CsvWriter(out, ["=Header", "ok"]) as w:
        w.writerow(['=HYPERLINK("http://evil","x")', "@SUM(1)"])
        w.writerow(["+cmd", "  -1+2"])
        w.writerow([-3, "\tx"])  # numbers stay numbers
        w.writerow(["+32 475 12 34 56", "-12.5"])  # so do phone numbers
        w.writerow(["+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0"])
    rows = _csv_rows(out.getvalue())
    assert rows == [
        ["'=Header", "ok"],
        ['\'=HYPERLINK("http://evil","x")', "'@SUM(1)"],
        ["'+cmd", "'  -1+2"],
        ["-3", "'\tx"],
        ["+32 475 12 34 56", "-12.5"],
        ["'+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"],
    ]


class _Level(enum.IntEnum):
    HIGH = 3


def test_csv_types_subclasses_and_generators():
    markupsafe = pytest.importorskip("markupsafe")
    out = io.BytesIO()
    with CsvWriter(out, ["a", "b", "c", "d", "e", "f", "g", "h"], tz="UTC") as w:
        w.writerow(
            v
            for v in [  # any iterable is a row
                _Level.HIGH,
                markupsafe.Markup("=x &amp; y"),
                dt.time(8, 5),
                uuid.UUID(int=1),
                b"\xff",
                Decimal("1E+2"),
                float("nan"),
                dt.datetime(2024, 1, 2, 3, 4, 5, 600),
            ]
        )
        w.writerows([[None, (1, "=2"), {"k": "v"}, "", 0.1, -0.0, True, False]])
    rows = _csv_rows(out.getvalue())
    assert rows[1:] == [
        [
            "3",
            "'=x &amp; y",
            "08:05:00",
            "00000000-0000-0000-0000-000000000001",
            "/w==",
            "1E+2",
            "nan",
            "2024-01-02T03:04:05.000600+00:00",
        ],
        ["", '[1,"=2"]', '{"k":"v"}', "", "0.1", "-0.0", "true", "false"],
    ]


def test_csv_bom_on_empty_file_and_streaming_output():
    out = io.BytesIO()
    CsvWriter(out, None, bom=True).close()
    assert out.getvalue() == b"\xef\xbb\xbf"
    # Output reaches the stream while rows are written, not only on close().
    sink = _CountingSink()
    w = CsvWriter(sink, ["text"])
    for n in range(3000):
        w.writerow([f"row {n:05d} " + "x" * 80])
    assert sink.size > 64 * 1024
    w.close()
    assert sink.size > 3000 * 80


@pytest.mark.parametrize("delimiter", ["", ";;", '"', "\n", "a", 1])
def test_csv_bad_delimiter(delimiter):
    with pytest.raises(WriterError):
        CsvWriter(io.BytesIO(), ["a"], delimiter=delimiter)


def test_row_length_must_match_header():
    w = CsvWriter(io.BytesIO(), ["a", "b"])
    with pytest.raises(WriterError, match="row 1 has 1 values"):
        w.writerow(["x"])
    w.close()
    with pytest.raises(WriterError, match="closed"):
        w.writerow(["x", "y"])


# -- JSON -------------------------------------------------------------------


def test_json_exact_content():
    out = io.BytesIO()
    with JsonArrayWriter(out, tz=PARIS) as w:
        w.write({"at": dt.datetime(2024, 7, 1, 12, 0, tzinfo=dt.UTC), "n": 1})
        w.write(
            {
                "at": dt.datetime(2024, 1, 1, 12, 0),
                "d": Decimal("1.10"),
                "b": b"\x00\x01",
                "text": "=1+1",
                "nested": {"k": [1, None]},
            }
        )
    data = out.getvalue()
    assert json.loads(data) == [
        {"at": "2024-07-01T14:00:00+02:00", "n": 1},
        {
            "at": "2024-01-01T13:00:00+01:00",
            "d": "1.10",
            "b": "AAE=",
            "text": "=1+1",
            "nested": {"k": [1, None]},
        },
    ]
    # One item per line: streaming consumers can read it line by line.
    assert data.count(b"\n") == 4


def test_json_empty_and_writerow():
    out = io.BytesIO()
    JsonArrayWriter(out).close()
    assert json.loads(out.getvalue()) == []
    out = io.BytesIO()
    w = open_writer("json", out, ["a", "b"])
    w.writerow([1, "x"])
    w.close()
    assert json.loads(out.getvalue()) == [{"a": 1, "b": "x"}]
    with pytest.raises(WriterError):
        JsonArrayWriter(io.BytesIO()).writerow([1])


def test_json_rejects_nan_clearly():
    w = JsonArrayWriter(io.BytesIO())
    with pytest.raises(ValueError):
        w.write({"x": float("nan")})


# -- XLSX -------------------------------------------------------------------


def test_xlsx_typed_cells_and_timezone():
    out = io.BytesIO()
    with XlsxWriter(out, HEADER, sheet_title="Audit: log?", tz="Europe/Paris") as w:
        w.writerow(ROW)
        w.writerow(
            [
                dt.datetime(2024, 1, 1, 23, 30),
                "x",
                0,
                Decimal("2.5"),
                False,
                None,
                "",
                [1, 2],
            ]
        )
    book = openpyxl.load_workbook(io.BytesIO(out.getvalue()))
    assert book.sheetnames == ["Audit_ log_"]
    sheet = book.active
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert rows[0] == HEADER
    assert sheet["A1"].font.b is True
    assert rows[1] == [
        dt.datetime(2024, 7, 1, 14, 30, 5),
        "Mitchell Admin",
        42,
        1.5,
        True,
        dt.datetime(2024, 2, 29, 0, 0),
        None,
        '{"a":"é","b":2}',
    ]
    assert rows[2] == [
        dt.datetime(2024, 1, 2, 0, 30),
        "x",
        0,
        2.5,
        False,
        None,
        None,
        "[1,2]",
    ]
    assert sheet["A2"].is_date and sheet["A2"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert sheet["F2"].number_format == "yyyy-mm-dd"
    assert sheet["C2"].data_type == "n"
    assert sheet["E2"].data_type == "b"


def test_xlsx_injection_stored_as_text_never_formula():
    out = io.BytesIO()
    payloads = [
        "=1+1",
        '=HYPERLINK("http://evil")',
        "@SUM(A1)",
        "+cmd|' /C calc'!A0",
        " =2",
        "-2+3+cmd|' /C calc'!A0",
        "\t=1",
    ]
    safe = ["safe", "+32 475 12 34 56", "-12.5"]
    with XlsxWriter(out, ["=v"]) as w:
        for value in payloads + safe:
            w.writerow([value])
    raw = zipfile.ZipFile(io.BytesIO(out.getvalue())).read("xl/worksheets/sheet1.xml")
    assert b"<f>" not in raw and b"<f " not in raw
    sheet = openpyxl.load_workbook(io.BytesIO(out.getvalue())).active
    header = sheet["A1"]
    assert header.value == "=v" and header.quotePrefix and header.font.b
    cells = [row[0] for row in sheet.iter_rows(min_row=2)]
    assert [c.value for c in cells] == payloads + safe
    assert all(c.data_type == "s" for c in cells)
    assert [c.quotePrefix for c in cells] == [True] * 7 + [False] * 3
    assert not any(c.font.b for c in cells)


def test_xlsx_illegal_characters_and_long_text():
    out = io.BytesIO()
    long_text = "x" * (writers.XLSX_MAX_CELL_CHARS + 5000)
    with XlsxWriter(out, None) as w:
        w.writerow(["a\x00b\x1fc\td"])
        w.writerow([long_text])
    sheet = openpyxl.load_workbook(io.BytesIO(out.getvalue())).active
    assert sheet["A1"].value == "a\\x00b\\x1fc\td"
    cut = sheet["A2"].value
    assert len(cut) == writers.XLSX_MAX_CELL_CHARS
    assert cut.endswith(" characters truncated]")
    removed = int(cut.rsplit("[... ", 1)[1].split()[0])
    assert len(long_text) - removed == cut.index("[... ")


def test_xlsx_rolls_over_to_new_sheet(monkeypatch):
    monkeypatch.setattr(writers, "XLSX_MAX_ROWS", 3)
    out = io.BytesIO()
    with XlsxWriter(out, ["n"], sheet_title="Events") as w:
        for n in range(5):
            w.writerow([n])
    book = openpyxl.load_workbook(io.BytesIO(out.getvalue()))
    assert book.sheetnames == ["Events", "Events (2)", "Events (3)"]
    values = [[c.value for c in r] for s in book for r in s.iter_rows()]
    assert values == [["n"], [0], [1], ["n"], [2], [3], ["n"], [4]]


def test_open_writer_dispatch_and_errors():
    assert isinstance(open_writer("CSV", io.BytesIO(), ["a"]), CsvWriter)
    xlsx = open_writer("xlsx", io.BytesIO(), ["a"], sheet_title="S")
    assert isinstance(xlsx, XlsxWriter)
    xlsx.close()
    with pytest.raises(WriterError, match="unknown export format"):
        open_writer("pdf", io.BytesIO(), ["a"])
    with pytest.raises(WriterError, match="time zone"):
        open_writer("csv", io.BytesIO(), ["a"], tz="Mars/Olympus")


# -- constant memory ---------------------------------------------------------


class _CountingSink(io.RawIOBase):
    """A binary stream that keeps nothing but the number of bytes written."""

    def __init__(self):
        self.size = 0

    def writable(self):
        return True

    def write(self, data):
        self.size += len(data)
        return len(data)

    def seekable(self):
        return False


def _peak_memory(fmt, count):
    sink = _CountingSink()
    gc.collect()
    tracemalloc.start()
    try:
        writer = open_writer(fmt, sink, HEADER[:4])
        base = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        for n in range(count):
            writer.writerow([base + dt.timedelta(seconds=n), f"user {n} =x", n, n / 7])
        writer.close()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sink.size > count * 10
    return peak


@pytest.mark.parametrize(
    ("fmt", "small_count"),
    [
        ("csv", 10_000),
        ("json", 10_000),
        ("xlsx", 10_000),
    ],
)
def test_memory_does_not_grow_with_rows(fmt, small_count):
    small = _peak_memory(fmt, small_count)
    large = _peak_memory(fmt, small_count * 10)
    # Ten times the rows: a buffering writer would need ~10x the memory.
    assert large < small * 1.5 + 256 * 1024, (small, large)


# -- XLSX: our own streaming container ---------------------------------------


class _ForwardSink(io.RawIOBase):
    """Keeps the bytes but cannot seek or tell, like an encrypting stream."""

    def __init__(self):
        self.buffer = bytearray()

    def writable(self):
        return True

    def write(self, data):
        self.buffer += data
        return len(data)


def test_xlsx_on_unseekable_stream_is_a_valid_package():
    sink = _ForwardSink()
    with XlsxWriter(sink, ["n", "text"]) as w:
        for n in range(3000):
            w.writerow([n, f"row {n} " + "y" * 60])
        # Streamed: the sheet's first blocks are already out before close().
        assert len(sink.buffer) > 1000
    data = bytes(sink.buffer)
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    names = archive.namelist()
    for part in (
        "[Content_Types].xml",
        "_rels/.rels",
        "xl/workbook.xml",
        "xl/_rels/workbook.xml.rels",
        "xl/styles.xml",
        "xl/worksheets/sheet1.xml",
        "docProps/core.xml",
    ):
        assert part in names
    sheet_info = archive.getinfo("xl/worksheets/sheet1.xml")
    assert sheet_info.flag_bits & 0x08  # sizes in a data descriptor
    assert sheet_info.compress_type == zipfile.ZIP_DEFLATED
    rows = list(openpyxl.load_workbook(io.BytesIO(data)).active.values)
    assert len(rows) == 3001
    assert rows[1500] == (1499, "row 1499 " + "y" * 60)


def test_xlsx_text_escaping_whitespace_and_limits():
    values = [
        "a & b < c > d \"q\" 's'",
        "  padded  ",
        "line1\r\nline2\nline3",
        "bad\ud800surrogate\uffff",
        "tab\tinside",
        "é漢字😀",
    ]
    out = io.BytesIO()
    with XlsxWriter(out, None) as w:
        w.writerow(values)
        w.writerow(["_x0041_ stays literal"])
    raw = zipfile.ZipFile(io.BytesIO(out.getvalue())).read("xl/worksheets/sheet1.xml")
    # Excel decodes _xHHHH_ in text: ours is escaped so Excel shows it as typed
    # (openpyxl does not decode these, hence the raw check).
    assert b"_x005F_x0041_ stays literal" in raw
    assert b'<t xml:space="preserve">  padded  </t>' in raw
    sheet = openpyxl.load_workbook(io.BytesIO(out.getvalue())).active
    assert [c.value for c in sheet[1]] == [
        "a & b < c > d \"q\" 's'",
        "  padded  ",
        "line1\r\nline2\nline3",
        "bad\\ud800surrogate\\uffff",
        "tab\tinside",
        "é漢字😀",
    ]


def test_xlsx_numbers_dates_and_odd_values():
    out = io.BytesIO()
    header = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
    with XlsxWriter(out, header) as w:
        w.writerow(
            [
                dt.date(1900, 2, 28),
                dt.date(1900, 3, 1),
                dt.date(1899, 12, 31),
                dt.datetime(1900, 1, 1, 6, 0),
                dt.time(13, 45, 30),
                float("inf"),
                Decimal("NaN"),
                _Level.HIGH,
                uuid.UUID(int=2),
                10**15 + 7,
            ]
        )
        w.writerow(
            [
                dt.datetime(2024, 3, 31, 1, 59, 59, 999000),
                1e-05,
                -0.5,
                b"ab",
                dt.datetime(2024, 7, 1, 12, 0, tzinfo=PARIS),
                None,
                None,
                None,
                None,
                None,
            ]
        )
    sheet = openpyxl.load_workbook(io.BytesIO(out.getvalue())).active
    assert [c.value for c in sheet[2]] == [
        dt.datetime(1900, 2, 28),
        dt.datetime(1900, 3, 1),
        "1899-12-31",  # before Excel's epoch: text
        dt.datetime(1900, 1, 1, 6, 0),
        dt.time(13, 45, 30),
        "inf",
        "NaN",
        3,
        "00000000-0000-0000-0000-000000000002",
        10**15 + 7,
    ]
    assert [c.data_type for c in sheet[2]] == [
        "d",
        "d",
        "s",
        "d",
        "d",
        "s",
        "s",
        "n",
        "s",
        "n",
    ]
    assert sheet["E2"].number_format == "hh:mm:ss"
    assert [c.value for c in sheet[3]][:5] == [
        dt.datetime(2024, 3, 31, 1, 59, 59, 999000),
        1e-05,
        -0.5,
        "YWI=",
        dt.datetime(2024, 7, 1, 10, 0),  # shown in the writer's zone (UTC)
    ]


def test_xlsx_custom_formats_and_many_columns():
    out = io.BytesIO()
    with XlsxWriter(
        out, None, datetime_format='dd/mm/yyyy "at" hh:mm', date_format="dd/mm/yyyy"
    ) as w:
        w.writerow([dt.datetime(2024, 5, 6, 7, 8), dt.date(2024, 5, 6)])
        w.writerow(list(range(30)))  # more columns than the first row: AA..AD
    sheet = openpyxl.load_workbook(io.BytesIO(out.getvalue())).active
    assert sheet["A1"].number_format == 'dd/mm/yyyy "at" hh:mm'
    assert sheet["B1"].number_format == "dd/mm/yyyy"
    assert sheet["AD2"].value == 29
    with pytest.raises(WriterError, match="16384"):
        XlsxWriter(io.BytesIO(), ["c"] * (writers.XLSX_MAX_COLUMNS + 1))


def test_xlsx_rolls_over_before_a_sheet_part_reaches_4_gib(monkeypatch):
    # The real limit is 4 GB of XML; shrink it to see the rollover happen.
    monkeypatch.setattr(writers, "XLSX_MAX_SHEET_BYTES", 60_000)
    out = io.BytesIO()
    with XlsxWriter(out, ["n", "text"], sheet_title="Big") as w:
        for n in range(400):
            w.writerow([n, "z" * 100])
    book = openpyxl.load_workbook(io.BytesIO(out.getvalue()))
    assert len(book.sheetnames) > 1
    assert book.sheetnames[:2] == ["Big", "Big (2)"]
    numbers = []
    for sheet in book:
        rows = list(sheet.values)
        assert rows[0] == ("n", "text")
        numbers += [row[0] for row in rows[1:]]
    assert numbers == list(range(400))
    for info in zipfile.ZipFile(io.BytesIO(out.getvalue())).infolist():
        assert info.file_size < 60_000


def test_xlsx_writes_no_temporary_file(tmp_path, monkeypatch):
    """Nothing lands in the temp directory, not even for a while (an export
    encrypted at rest must never exist as plaintext on disk)."""
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    assert tempfile.gettempdir() == str(spool)

    def fill(sheet_append, count):
        seen = set()
        for n in range(count):
            sheet_append([n, f"secret {n}", dt.datetime(2024, 1, 1, 12, 0)])
            if n % 500 == 0:
                seen.update(os.listdir(spool))
        return seen

    sink = _CountingSink()
    writer = XlsxWriter(sink, ["n", "text", "when"])
    seen = fill(writer.writerow, 5000)
    writer.close()
    seen.update(os.listdir(spool))
    assert seen == set()
    assert sink.size > 5000
    # The watch can see a spooling writer: openpyxl's write-only mode.
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("x")
    seen = fill(sheet.append, 600)
    assert seen, "openpyxl write-only should have spooled to TMPDIR"
    book.save(io.BytesIO())  # finishes and removes openpyxl's spool file
    assert os.listdir(spool) == []
