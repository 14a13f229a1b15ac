"""Storage sinks: local directory, S3 (any S3-compatible store), SFTP.

``make_sink(config)`` builds one from a plain dict (``type`` plus the sink's
options); see :mod:`.base` for the interface and each module for its keys.
A config with a ``storage`` mode (``full`` or ``incremental``: the Odoo
destinations) gives a destination whose incremental snapshots are listed
and read beside its full archives (``repository.StoredBackupsSink``);
``split_storage`` separates those keys from the sink's own.
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
#: keys of a destination config that are not the sink's own: ``storage``
#: (``full`` | ``incremental``: how the backup engine writes there; any
#: mode lists and reads both kinds), ``keyring_file`` (opens the
#: repositories; default: the environment), ``database`` (only this
#: database's repositories are opened)
STORAGE_KEYS = ("storage", "keyring_file", "database")


def split_storage(config):
    """``(sink config, storage options)`` of a destination config: the
    first for the sink itself (and ``run_incremental_backup``), the second
    the :data:`STORAGE_KEYS` present (empty for a plain sink config)."""
    if not isinstance(config, dict):
        raise SinkError("A destination configuration must be a dict.")
    plain = {k: v for k, v in config.items() if k not in STORAGE_KEYS}
    storage = {k: config[k] for k in STORAGE_KEYS if k in config}
    return plain, storage


def storage_mode(config) -> str:
    """``incremental`` or ``full``: how the engine writes to ``config``."""
    if isinstance(config, dict) and config.get("storage") == "incremental":
        return "incremental"
    return "full"


def make_sink(config, *, keyring=None):
    """Build a sink from ``{"type": "local" | "s3" | "sftp", ...options}``.

    Unknown options are refused (a typo must not silently drop, say, the
    server-side encryption flag). Secrets given here are kept in the sink
    only and never appear in its ``repr`` or in error messages.

    With a ``storage`` mode (see :data:`STORAGE_KEYS`) the sink is wrapped
    in ``repository.StoredBackupsSink``: the destination's snapshots are
    listed, read (restore, verify, download) and deleted (forgotten) as
    archives beside its full archives; ``keyring`` (else ``keyring_file``,
    else the environment) opens its repositories when it has any.
    """
    plain, storage = split_storage(config)
    sink = _make_plain(plain)
    if "storage" not in storage:
        return sink
    from ..repository.stored import StoredBackupsSink

    try:
        return StoredBackupsSink(
            sink,
            keyring=keyring,
            keyring_file=storage.get("keyring_file"),
            storage=storage["storage"],
            database=storage.get("database"),
        )
    except BaseException:
        sink.close()
        raise


def _make_plain(options):
    options = dict(options)
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
