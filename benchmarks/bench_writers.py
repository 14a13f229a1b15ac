#!/usr/bin/env python3
"""Benchmark: audit_export's tabular writers against the usual libraries.

Writes the same N rows x 7 mixed columns (int, name, phone number, float,
aware datetime, bool or None, date) with:

* CSV: the stdlib ``csv.writer`` (the floor: no type conversion beyond
  ``str()``, no formula-injection check) and our ``CsvWriter``;
* XLSX: openpyxl's write-only mode, xlsxwriter's ``constant_memory`` mode
  (what Odoo's ``/web/export/xlsx`` uses, here in its streaming variant) and
  our ``XlsxWriter``.

Every writer gets the rows already built (row generation is not timed) and
writes to a sink that only counts bytes, so only the writer is measured.
Time is wall clock (``time.perf_counter``) and this process' CPU time
(``time.process_time``, steadier on a shared machine), one run each, in one
process, printed side by side with the output size. Run from the repository root::

    python3 benchmarks/bench_writers.py                  # 100,000 rows
    python3 benchmarks/bench_writers.py --rows 20000 --skip openpyxl

xlsxwriter is optional (``pip install xlsxwriter``); it is reported as
"not installed" when missing. xlsxwriter and openpyxl spool to temporary
files (their own design); ours writes none.
"""

import argparse
import csv
import datetime as dt
import io
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from suite_core.writers import CsvWriter, XlsxWriter  # noqa: E402

HEADER = ["id", "name", "phone", "amount", "when", "flag", "day"]


class CountingSink(io.RawIOBase):
    """A binary stream that keeps only the number of bytes written."""

    def __init__(self):
        self.size = 0

    def writable(self):
        return True

    def write(self, data):
        self.size += len(data)
        return len(data)


def make_rows(count):
    base = dt.datetime(2024, 1, 1, 8, 0, tzinfo=dt.UTC)
    day = dt.date(2024, 1, 1)
    rows = []
    for n in range(count):
        rows.append(
            [
                n + 1,
                f"Partner {n} & Sons <{n % 97}>",
                f"+32 475 {n % 100:02d} {n % 89:02d} {n % 71:02d}",
                n * 1.25,
                base + dt.timedelta(seconds=37 * n),
                (n % 3 == 0) if n % 5 else None,
                day + dt.timedelta(days=n % 3650),
            ]
        )
    return rows


def stdlib_csv(rows, sink):
    text = io.TextIOWrapper(sink, encoding="utf-8", newline="")
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    text.flush()
    text.detach()


def ours_csv(rows, sink):
    with CsvWriter(sink, HEADER) as writer:
        for row in rows:
            writer.writerow(row)


def openpyxl_write_only(rows, sink):
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("Export")
    sheet.append(HEADER)
    for row in rows:
        # openpyxl refuses aware datetimes (as Excel has no offsets).
        sheet.append(
            [v.replace(tzinfo=None) if isinstance(v, dt.datetime) else v for v in row]
        )
    book.save(sink)


def xlsxwriter_constant_memory(rows, sink):
    import xlsxwriter

    # xlsxwriter needs a seekable output; its rows are spooled to temp files.
    with tempfile.TemporaryFile() as out:
        book = xlsxwriter.Workbook(out, {"constant_memory": True})
        sheet = book.add_worksheet("Export")
        datetime_style = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        date_style = book.add_format({"num_format": "yyyy-mm-dd"})
        sheet.write_row(0, 0, HEADER)
        for r, row in enumerate(rows, 1):
            for c, value in enumerate(row):
                if isinstance(value, dt.datetime):
                    sheet.write_datetime(
                        r, c, value.replace(tzinfo=None), datetime_style
                    )
                elif isinstance(value, dt.date):
                    sheet.write_datetime(r, c, value, date_style)
                elif value is not None:
                    sheet.write(r, c, value)
        book.close()
        out.seek(0)
        while chunk := out.read(1 << 20):
            sink.write(chunk)


def ours_xlsx(rows, sink):
    with XlsxWriter(sink, HEADER) as writer:
        for row in rows:
            writer.writerow(row)


METHODS = [
    ("csv", "stdlib csv.writer", stdlib_csv),
    ("csv", "ours CsvWriter", ours_csv),
    ("openpyxl", "openpyxl write-only", openpyxl_write_only),
    ("xlsxwriter", "xlsxwriter constant_memory", xlsxwriter_constant_memory),
    ("xlsx", "ours XlsxWriter", ours_xlsx),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated keys to skip: csv, openpyxl, xlsxwriter, xlsx",
    )
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    rows = make_rows(args.rows)
    print(f"{args.rows:,} rows x {len(HEADER)} columns (pid {os.getpid()})")
    print(f"{'writer':<30} {'wall s':>8} {'CPU s':>8} {'MB out':>8}")
    for key, label, func in METHODS:
        if key in skip:
            continue
        sink = CountingSink()
        try:
            start, cpu = time.perf_counter(), time.process_time()
            func(rows, sink)
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu
        except ImportError as exc:
            print(f"{label:<30} {'n/a':>8}   ({exc.name} not installed)")
            continue
        print(
            f"{label:<30} {elapsed:>8.2f} {cpu:>8.2f} {sink.size / 1e6:>8.1f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
