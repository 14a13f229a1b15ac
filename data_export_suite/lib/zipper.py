"""Streaming ZIP writer, optionally AES-256 encrypted (WinZip AE-2).

Members are written in chunks straight into ``dest_stream`` (which may be
unseekable, e.g. an encrypting writer): nothing is buffered whole in memory
and no temporary file is created. With a password the archive uses WinZip's
AES-256 extension (AE-2, through the ``pyzipper`` package): 7-Zip, WinZip,
macOS Archive Utility (recent) and ``pyzipper`` open it; the legacy
ZipCrypto scheme is never used.
"""

import contextlib
import io
import zipfile

try:
    import pyzipper
except ImportError:  # pragma: no cover - declared in external_dependencies
    pyzipper = None

from suite_core.keyring import SuiteError

CHUNK_SIZE = 1024 * 1024
MIN_PASSWORD_LENGTH = 8


class ZipperError(SuiteError, ValueError):
    """Bad input for a ZIP archive (empty password, unsafe member name)."""


class _ForwardOnly(io.RawIOBase):
    """Present ``raw`` as an unseekable sink so zipfile streams into it.

    zipfile then writes data descriptors after each member instead of
    seeking back to patch local headers; the position it needs is counted
    here.
    """

    def __init__(self, raw):
        super().__init__()
        self._raw = raw
        self._pos = 0

    def writable(self):
        return True

    def seekable(self):
        return False

    def tell(self):
        return self._pos

    def write(self, data):
        data = bytes(data)
        self._raw.write(data)
        self._pos += len(data)
        return len(data)

    def flush(self):
        flush = getattr(self._raw, "flush", None)
        if flush:
            flush()


def _check_arcname(arcname):
    if not arcname or not isinstance(arcname, str):
        raise ZipperError("A ZIP member needs a non-empty name.")
    parts = arcname.replace("\\", "/").split("/")
    if arcname.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise ZipperError(f"Unsafe ZIP member name: {arcname!r}")
    return arcname


def _open_archive(dest_stream, password):
    sink = _ForwardOnly(dest_stream)
    if password is None:
        return zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED)
    if isinstance(password, str):
        password = password.encode("utf-8")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ZipperError(
            f"The ZIP password must have at least {MIN_PASSWORD_LENGTH} characters."
        )
    if pyzipper is None:
        raise ZipperError(
            "Password-protected ZIP files need the Python package 'pyzipper'."
        )
    archive = pyzipper.AESZipFile(
        sink, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES
    )
    archive.setpassword(password)
    archive.setencryption(pyzipper.WZ_AES, nbits=256)
    return archive


def write_zip(dest_stream, members, password=None):
    """Write the ZIP archive of ``members`` into ``dest_stream``.

    :param dest_stream: binary file object with ``write`` (not closed here)
    :param members: iterable of ``(arcname, bytes | binary file object)``;
        file objects are read in chunks and are not closed here
    :param password: None for a plain ZIP, else str/bytes: AES-256 (AE-2)
    :return: the number of members written
    """
    count = 0
    with _open_archive(dest_stream, password) as archive:
        for arcname, content in members:
            with archive.open(_check_arcname(arcname), "w") as member:
                if isinstance(content, bytes | bytearray | memoryview):
                    member.write(content)
                else:
                    while chunk := content.read(CHUNK_SIZE):
                        member.write(chunk)
            count += 1
    return count


@contextlib.contextmanager
def zip_member_writer(dest_stream, arcname, password=None):
    """Context manager yielding a writable stream for ONE zip member.

    For producers that write (a CSV writer) rather than hand over bytes:
    ``with zip_member_writer(out, "export.csv", pw) as fh: CsvWriter(fh, ...)``.
    """
    with (
        _open_archive(dest_stream, password) as archive,
        archive.open(_check_arcname(arcname), "w") as member,
    ):
        yield member
