"""Tier 1: audit_export/lib/writers.py, parsed back with csv, json and openpyxl."""

import csv
import datetime as dt
import gc
import io
import json
import tracemalloc
import zipfile
from decimal import Decimal
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from audit_export.lib import writers
from audit_export.lib.writers import (
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
        "=1+1", "+1", "-1", "@SUM(A1)", "\tcmd", "\rcmd",
        "  =HYPERLINK(\"http://x\")", " \t=cmd", "\uff1d1+1",
        "=cmd|' /C calc'!A0", "-2+3",
    ],
)
def test_neutralize_dangerous(text):
    assert is_dangerous(text)
    assert neutralize(text) == "'" + text


@pytest.mark.parametrize(
    "value", ["", "abc", "a=b", "1-2", "'=already", "e-mail", "   ", 5, -5, None, 1.5]
)
def test_neutralize_leaves_safe_values(value):
    assert neutralize(value) == value


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
            "2024-07-01T12:30:05+00:00", "Mitchell Admin", "42", "1.5", "true",
            "2024-02-29", "", '{"a":"é","b":2}',
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
        w.writerow(["=HYPERLINK(\"http://evil\",\"x\")", "@SUM(1)"])
        w.writerow(["+cmd", "  -1+2"])
        w.writerow([-3, "\tx"])  # numbers stay numbers
    rows = _csv_rows(out.getvalue())
    assert rows == [
        ["'=Header", "ok"],
        ["'=HYPERLINK(\"http://evil\",\"x\")", "'@SUM(1)"],
        ["'+cmd", "'  -1+2"],
        ["-3", "'\tx"],
    ]


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
        w.write({"at": dt.datetime(2024, 1, 1, 12, 0), "d": Decimal("1.10"),
                 "b": b"\x00\x01", "text": "=1+1", "nested": {"k": [1, None]}})
    data = out.getvalue()
    assert json.loads(data) == [
        {"at": "2024-07-01T14:00:00+02:00", "n": 1},
        {"at": "2024-01-01T13:00:00+01:00", "d": "1.10", "b": "AAE=",
         "text": "=1+1", "nested": {"k": [1, None]}},
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
        w.writerow([dt.datetime(2024, 1, 1, 23, 30), "x", 0, Decimal("2.5"),
                    False, None, "", [1, 2]])
    book = openpyxl.load_workbook(io.BytesIO(out.getvalue()))
    assert book.sheetnames == ["Audit_ log_"]
    sheet = book.active
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert rows[0] == HEADER
    assert sheet["A1"].font.b is True
    assert rows[1] == [
        dt.datetime(2024, 7, 1, 14, 30, 5), "Mitchell Admin", 42, 1.5, True,
        dt.datetime(2024, 2, 29, 0, 0), None, '{"a":"é","b":2}',
    ]
    assert rows[2] == [
        dt.datetime(2024, 1, 2, 0, 30), "x", 0, 2.5, False, None, None, "[1,2]",
    ]
    assert sheet["A2"].is_date and sheet["A2"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert sheet["F2"].number_format == "yyyy-mm-dd"
    assert sheet["C2"].data_type == "n"
    assert sheet["E2"].data_type == "b"


def test_xlsx_injection_stored_as_text_never_formula():
    out = io.BytesIO()
    payloads = ["=1+1", "=HYPERLINK(\"http://evil\")", "@SUM(A1)", "+1", " =2"]
    with XlsxWriter(out, ["v"]) as w:
        for value in payloads:
            w.writerow([value])
        w.writerow(["safe"])
    raw = zipfile.ZipFile(io.BytesIO(out.getvalue())).read("xl/worksheets/sheet1.xml")
    assert b"<f>" not in raw and b"<f " not in raw
    sheet = openpyxl.load_workbook(io.BytesIO(out.getvalue())).active
    cells = [row[0] for row in sheet.iter_rows(min_row=2)]
    assert [c.value for c in cells] == [*payloads, "safe"]
    assert all(c.data_type == "s" for c in cells)
    assert [c.quotePrefix for c in cells] == [True] * 5 + [False]


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
            writer.writerow(
                [base + dt.timedelta(seconds=n), f"user {n} =x", n, n / 7]
            )
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
        ("xlsx", 2_000),  # openpyxl under tracemalloc is slow: 2k vs 20k
        pytest.param("xlsx", 10_000, marks=pytest.mark.slow),
    ],
)
def test_memory_does_not_grow_with_rows(fmt, small_count):
    small = _peak_memory(fmt, small_count)
    large = _peak_memory(fmt, small_count * 10)
    # Ten times the rows: a buffering writer would need ~10x the memory.
    assert large < small * 1.5 + 256 * 1024, (small, large)
