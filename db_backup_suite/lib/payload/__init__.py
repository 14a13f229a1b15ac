"""The decrypted payload of an archive: a standard tar, compressed with zstd
or gzip, written and read in one streaming pass (format:
docs/payload-format.md). Each module holds one concern and is imported
directly; this package re-exports nothing.

- :mod:`.tar`: the tar stream's shared constants, member headers and part
  names;
- :mod:`.sampling`: which members are stored rather than compressed;
- :mod:`.writer`: :class:`~.writer.PayloadWriter`;
- :mod:`.reader`: :class:`~.reader.PayloadReader` and its members;
- :mod:`.extract`: safe member names and extraction to disk.
"""
