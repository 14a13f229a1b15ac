"""data_export_suite.lib.serialize: ISO dates with offsets, batching, paths."""

import datetime as dt

import pytest

from data_export_suite.lib.serialize import (
    CountingWriter,
    check_path_syntax,
    chunked,
    get_zone,
    iso_datetime,
    json_value,
    parse_field_paths,
    safe_filename,
)


def test_chunked_sizes():
    assert [len(b) for b in chunked(range(2501), 1000)] == [1000, 1000, 501]
    assert list(chunked([], 10)) == []
    with pytest.raises(ValueError):
        list(chunked([1], 0))


def test_iso_datetime_has_offset_and_follows_the_zone():
    naive_utc = dt.datetime(2024, 7, 1, 8, 30, 0)
    assert iso_datetime(naive_utc) == "2024-07-01T08:30:00+00:00"
    assert iso_datetime(naive_utc, get_zone("Europe/Brussels")) == (
        "2024-07-01T10:30:00+02:00"
    )
    assert iso_datetime(naive_utc.replace(microsecond=5)) == (
        "2024-07-01T08:30:00.000005+00:00"
    )
    assert get_zone("Not/AZone") is dt.UTC
    assert get_zone(False) is dt.UTC


def test_json_value():
    assert json_value(False) is None
    assert json_value(dt.date(2024, 2, 29)) == "2024-02-29"
    assert json_value(b"\x00\x01") == "AAE="
    assert json_value(12.5) == 12.5
    assert json_value("text") == "text"


def test_field_paths():
    assert parse_field_paths("id, name\npartner_id.country_id.name,name,") == [
        "id",
        "name",
        "partner_id.country_id.name",
    ]
    assert check_path_syntax("partner_id.country_id.name") == [
        "partner_id",
        "country_id",
        "name",
    ]
    for bad in ("a..b", "a.b;drop", "1abc", "", "a.b c", "é"):
        with pytest.raises(ValueError):
            check_path_syntax(bad)


def test_counting_writer_and_filename(tmp_path):
    with open(tmp_path / "f", "wb") as fh:
        counter = CountingWriter(fh)
        counter.write(b"abc")
        counter.write(b"de")
    assert counter.size == 5
    assert safe_filename("Customers / 2024: all") == "Customers___2024__all"
    assert safe_filename("..") == "export"
