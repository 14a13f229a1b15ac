"""Storage sinks: local directory, S3 (any S3-compatible store), SFTP.

``make_sink(config)`` builds one from a plain dict (``type`` plus the sink's
options); see :mod:`.base` for the interface and each module for its keys.
"""

from ..errors import SinkError
from .base import Sink, SinkWriter, StoredObject, validate_name

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
        + ", ".join(SINK_TYPES) + ".")
