"""data_export_suite.lib.zipper: streaming ZIP, AES-256 with a password."""

import io
import shutil
import subprocess
import zipfile

import pytest
import pyzipper

from data_export_suite.lib.zipper import ZipperError, write_zip, zip_member_writer


class OneWay(io.RawIOBase):
    """An unseekable sink, like the encrypting writer the suite streams into."""

    def __init__(self):
        super().__init__()
        self.data = bytearray()

    def writable(self):
        return True

    def write(self, data):
        self.data += data
        return len(data)


def _members():
    yield "a.csv", b"id,name\r\n1,Alice\r\n"
    yield "dir/b.json", io.BytesIO(b'[{"id": 1}]' * 100_000)


def test_plain_zip_streams_into_unseekable_sink():
    sink = OneWay()
    assert write_zip(sink, _members()) == 2
    with zipfile.ZipFile(io.BytesIO(bytes(sink.data))) as archive:
        assert archive.namelist() == ["a.csv", "dir/b.json"]
        assert archive.read("a.csv") == b"id,name\r\n1,Alice\r\n"
        assert archive.read("dir/b.json") == b'[{"id": 1}]' * 100_000
        assert archive.testzip() is None


def test_aes_zip_opens_with_pyzipper_and_not_without_password():
    sink = OneWay()
    write_zip(sink, _members(), password="correct horse battery")
    data = bytes(sink.data)
    # First local file header: encrypted flag set, compression method 99
    # (WinZip AES), and the AES extra field 0x9901 with vendor "AE" and
    # strength 3 (AES-256).
    assert data[:4] == b"PK\x03\x04"
    assert int.from_bytes(data[6:8], "little") & 1
    assert int.from_bytes(data[8:10], "little") == 99
    extra_at = data.index(b"\x01\x99")
    assert data[extra_at + 4 : extra_at + 6] == b"\x02\x00"  # AE-2
    assert data[extra_at + 6 : extra_at + 8] == b"AE"
    assert data[extra_at + 8] == 3
    raw = io.BytesIO(data)
    with pyzipper.AESZipFile(raw) as archive:
        archive.setpassword(b"correct horse battery")
        assert archive.read("a.csv") == b"id,name\r\n1,Alice\r\n"
        assert archive.read("dir/b.json") == b'[{"id": 1}]' * 100_000
    raw.seek(0)
    with pyzipper.AESZipFile(raw) as archive:
        archive.setpassword(b"wrong password!")
        with pytest.raises(RuntimeError):
            archive.read("a.csv")
    # The standard library cannot read AES members: the content is encrypted.
    assert b"Alice" not in sink.data


@pytest.mark.skipif(
    not (shutil.which("7zz") or shutil.which("7z")), reason="7-Zip not installed"
)
def test_aes_zip_opens_with_7zip(tmp_path):
    sevenzip = shutil.which("7zz") or shutil.which("7z")
    path = tmp_path / "export.zip"
    with open(path, "wb") as fh:
        write_zip(fh, _members(), password="correct horse battery")
    ok = subprocess.run(
        [sevenzip, "t", "-pcorrect horse battery", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Everything is Ok" in ok.stdout
    listing = subprocess.run(
        [sevenzip, "l", "-slt", "-pcorrect horse battery", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "AES-256" in listing
    bad = subprocess.run(
        [sevenzip, "t", "-pwrong password", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0
    out = tmp_path / "out"
    subprocess.run(
        [sevenzip, "x", "-pcorrect horse battery", f"-o{out}", str(path)],
        capture_output=True,
        check=True,
    )
    assert (out / "a.csv").read_bytes() == b"id,name\r\n1,Alice\r\n"


def test_member_writer_streams_one_member():
    sink = OneWay()
    with zip_member_writer(sink, "export.csv", password="long enough pw") as fh:
        for i in range(1000):
            fh.write(f"{i},row\r\n".encode())
    with pyzipper.AESZipFile(io.BytesIO(bytes(sink.data))) as archive:
        archive.setpassword(b"long enough pw")
        lines = archive.read("export.csv").decode().splitlines()
    assert lines[0] == "0,row" and lines[-1] == "999,row" and len(lines) == 1000


@pytest.mark.parametrize("name", ["", "/etc/passwd", "../x", "a/../../x", "C:x"])
def test_unsafe_member_names_are_refused(name):
    with pytest.raises(ZipperError):
        write_zip(OneWay(), [(name, b"x")])


def test_short_password_is_refused():
    with pytest.raises(ZipperError, match="at least"):
        write_zip(OneWay(), [("a.txt", b"x")], password="short")


def test_nothing_touches_the_disk(tmp_path, monkeypatch):
    """Plaintext never lands in a temporary file: the ZIP (plain or AES) is
    built in the stream only. Temporary files would go to tmp_path/tmp."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmp))
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.chdir(tmp_path)
    for password in (None, "correct horse battery"):
        sink = OneWay()
        write_zip(sink, _members(), password=password)
        with zip_member_writer(sink, "c.csv", password) as member:
            member.write(b"secret,row\r\n" * 10_000)
        assert b"Alice" not in sink.data or password is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]
    assert list(tmp.iterdir()) == []
