"""Storage sinks: local directory, S3 (any S3-compatible store), SFTP.

``make_sink(config)`` builds one from a plain dict (``type`` plus the sink's
options); see :mod:`.base` for the interface and each module for its keys.
``open_download(config, name, offset=...)`` streams one object for an HTTP
response (constant memory, resumable, closes everything when done).
"""

from ..errors import SinkError
from .base import (
    COPY_CHUNK,
    IncompleteWrite,
    Sink,
    SinkWriter,
    StoredObject,
    validate_name,
)

SINK_TYPES = ("local", "s3", "sftp")


def make_sink(config):
    """Build a sink from ``{"type": "local" | "s3" | "sftp", ...options}``.

    Unknown options are refused (a typo must not silently drop, say, the
    server-side encryption flag). Secrets given here are kept in the sink
    only and never appear in its ``repr`` or in error messages.
    """
    if not isinstance(config, dict):
        raise SinkError("A destination configuration must be a dict.")
    options = dict(config)
    kind = options.pop("type", None)
    if kind == "local":
        from .local import LocalSink

        return LocalSink(**options)
    if kind == "s3":
        from .s3 import S3Sink

        return S3Sink(**options)
    if kind == "sftp":
        from .sftp import SftpSink

        return SftpSink(**options)
    raise SinkError(
        f"Unknown destination type {kind!r}: expected one of "
        + ", ".join(SINK_TYPES)
        + "."
    )


class Download:
    """One object streamed from a destination, for an HTTP response body.

    ``size``: the object's full size; ``offset``/``length``: the part sent
    (``length = size - offset``; for ``Content-Length`` and, with an offset,
    ``Content-Range: bytes offset-(size-1)/size``); ``modified``: its time.
    Iterating yields chunks of at most ``chunk_size`` bytes, read as they
    are consumed (constant memory whatever the size); the reader and, when
    it was built here, the sink are closed at the end, on error and on
    :meth:`close` (WSGI servers call it when the client goes away).
    """

    def __init__(self, sink, name, *, offset=0, chunk_size=COPY_CHUNK, own=False):
        self._sink = sink
        self._own = own
        stored = sink.stat(name)
        if offset > stored.size:
            raise SinkError(
                f"{name!r} has {stored.size} bytes: cannot start at {offset}."
            )
        self.name = name
        self.size = stored.size
        self.modified = stored.modified
        self.offset = offset
        self.length = stored.size - offset
        self._chunks = sink.iter_read(
            name, offset=offset, length=self.length, chunk_size=chunk_size
        )

    def __iter__(self):
        try:
            yield from self._chunks
        finally:
            self.close()

    def close(self):
        self._chunks.close()
        if self._own:
            self._own = False
            self._sink.close()


def open_download(config, name, *, offset=0, chunk_size=COPY_CHUNK):
    """A :class:`Download` of ``name`` from ``config`` (a sink config dict,
    or a Sink the caller keeps). ``SinkObjectNotFound`` when absent."""
    own = isinstance(config, dict)
    sink = make_sink(config) if own else config
    try:
        return Download(sink, name, offset=offset, chunk_size=chunk_size, own=own)
    except BaseException:
        if own:
            sink.close()
        raise
