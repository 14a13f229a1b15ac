"""S3 sink (boto3): any S3-compatible endpoint, our own multipart upload.

Why our own multipart upload and not ``upload_fileobj``: we need

* bounded memory with a stream of unknown size: at most ``max_in_flight``
  parts are being uploaded while one more is being filled, in reused
  buffers, so memory stays at ``part_size * (max_in_flight + 1)``;
* a part size that grows with the part number, so a stream of unknown size
  can go far beyond 10,000 x 8 MiB (78 GiB): see :func:`part_size_for`;
* an atomic finish: ``CompleteMultipartUpload`` is sent only by
  :meth:`S3Writer.commit`; an abort or any failure sends
  ``AbortMultipartUpload``, and :meth:`S3Sink.cleanup_incomplete` aborts
  the uploads a killed process left behind;
* a retry per part, with backoff, on top of botocore's connection retries.
"""

import io
import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC

from ..errors import SinkError, SinkObjectNotFound, SinkUnreachableError
from .base import (
    IncompleteWrite,
    Sink,
    SinkWriter,
    StoredObject,
    StreamReader,
    _check_offset,
    validate_name,
    validate_prefix,
)

_logger = logging.getLogger(__name__)

MiB = 1024 * 1024
GiB = 1024 * MiB
#: S3 limits: parts are 5 MiB..5 GiB (the last one may be smaller), at most
#: 10,000 parts per upload, objects up to 5 TiB.
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * MiB
#: The part size doubles after every ``PARTS_PER_STEP`` parts.
PARTS_PER_STEP = 1000

_UNREACHABLE_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
    "InvalidClientTokenId",
    "403",
}
_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}


def part_size_for(part_number, base=DEFAULT_PART_SIZE):
    """Size of part ``part_number`` (1-based): ``base`` doubled every
    :data:`PARTS_PER_STEP` parts, capped at 5 GiB.

    With the 8 MiB minimum base, 10,000 parts hold about 8 TiB, beyond the
    5 TiB maximum S3 object; the first 1000 parts (8-16 GiB) stay small.
    """
    if part_number < 1 or part_number > MAX_PARTS:
        raise SinkError(f"S3 part number {part_number} is outside 1..{MAX_PARTS}.")
    size = base << ((part_number - 1) // PARTS_PER_STEP)
    return max(MIN_PART_SIZE, min(size, MAX_PART_SIZE))


def base_part_size(configured=None, size_hint=None):
    """The first part size: the configured one (at least 5 MiB), raised when
    ``size_hint`` says the object would not fit in 9,000 parts of it."""
    base = max(MIN_PART_SIZE, int(configured or DEFAULT_PART_SIZE))
    if size_hint:
        needed = -(-int(size_hint) // (MAX_PARTS - PARTS_PER_STEP))
        if needed > base:
            base = min(MAX_PART_SIZE, -(-needed // MiB) * MiB)
    return base


def _error_code(exc):
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code, status


class _PartBody(io.RawIOBase):
    """A seekable, read-only view on a part buffer: botocore streams it (and
    rewinds it on retries) without copying the part."""

    def __init__(self, buffer, length):
        super().__init__()
        self._view = memoryview(buffer)[:length]
        self._pos = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[
            whence
        ]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size=-1):
        end = (
            len(self._view)
            if size is None or size < 0
            else min(len(self._view), self._pos + size)
        )
        data = bytes(self._view[self._pos : end])
        self._pos = max(self._pos, end)
        return data

    def readinto(self, buffer):
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def __len__(self):
        return len(self._view)

    def close(self):
        self._view.release()
        super().close()


class S3Writer(SinkWriter):
    """Parts are filled in a pool of ``max_in_flight + 1`` reusable buffers:
    one being filled while the others upload. Taking a free buffer blocks
    while every other one is uploading, which bounds memory and
    concurrency without allocating a new part buffer each time."""

    def __init__(self, sink, name, size_hint=None):
        super().__init__(sink, name)
        self.key = sink._key(name)
        self.base_part_size = base_part_size(sink.part_size, size_hint)
        self._free = queue.Queue()
        self._buffers = 0
        self._buffer = None
        self._fill = 0
        self._upload_id = None
        self._parts = {}
        self._part_number = 0
        self._futures = []
        self._failure = None
        self._stop = threading.Event()
        self._pool = None

    # helpers ----------------------------------------------------------------
    def _next_part_size(self):
        return part_size_for(self._part_number + 1, self.base_part_size)

    def _raise_failure(self):
        if self._failure is not None:
            raise self._failure

    def _take_buffer(self, size):
        """A free buffer of at least ``size`` bytes (waits for one)."""
        if self._free.empty() and self._buffers < self.sink.max_in_flight + 1:
            self._buffers += 1
            return bytearray(size)
        while True:
            self._raise_failure()
            try:
                buffer = self._free.get(timeout=0.5)
            except queue.Empty:
                continue
            # Parts grow every PARTS_PER_STEP parts: replace small buffers.
            return buffer if len(buffer) >= size else bytearray(size)

    def _start_upload(self):
        try:
            response = self.sink._client().create_multipart_upload(
                Bucket=self.sink.bucket, Key=self.key, **self.sink._put_args()
            )
        except Exception as exc:
            raise self.sink._error(
                exc, f"starting the upload of {self.name!r}"
            ) from exc
        self._upload_id = response["UploadId"]
        self._pool = ThreadPoolExecutor(
            max_workers=self.sink.max_in_flight, thread_name_prefix="dbbs-s3-part"
        )

    def _submit_buffer(self):
        """Send the filled buffer as the next part."""
        buffer, length = self._buffer, self._fill
        self._buffer, self._fill = None, 0
        if self._upload_id is None:
            try:
                self._start_upload()
            except BaseException:
                self._free.put(buffer)
                raise
        self._part_number += 1
        if self._part_number > MAX_PARTS:
            raise SinkError(f"{self.name!r} exceeds {MAX_PARTS} S3 parts.")
        self._futures.append(
            self._pool.submit(self._upload_part, self._part_number, buffer, length)
        )

    def _upload_part(self, number, buffer, length):
        try:
            client = self.sink._client()
            attempts = self.sink.part_attempts
            for attempt in range(1, attempts + 1):
                if self._stop.is_set():
                    return
                try:
                    with _PartBody(buffer, length) as body:
                        response = client.upload_part(
                            Bucket=self.sink.bucket,
                            Key=self.key,
                            UploadId=self._upload_id,
                            PartNumber=number,
                            Body=body,
                            ContentLength=length,
                        )
                except Exception as exc:
                    code, _status = _error_code(exc)
                    if attempt == attempts or code in _UNREACHABLE_CODES:
                        raise
                    delay = min(self.sink.retry_backoff * 2 ** (attempt - 1), 10)
                    _logger.warning(
                        "S3 part %s of %s failed (attempt %s/%s), retrying in "
                        "%.1fs: %s",
                        number,
                        self.key,
                        attempt,
                        attempts,
                        delay,
                        exc,
                    )
                    if self._stop.wait(delay):
                        return
                    continue
                self._parts[number] = response["ETag"]
                return
        except Exception as exc:
            if self._failure is None:
                self._failure = self.sink._error(
                    exc,
                    f"uploading part {number} of {self.name!r} "
                    f"(after {self.sink.part_attempts} attempts)",
                )
        finally:
            self._free.put(buffer)

    # SinkWriter -------------------------------------------------------------
    def _write(self, view):
        self._raise_failure()
        while view.nbytes:
            size = self._next_part_size()
            if self._buffer is None:
                self._buffer = self._take_buffer(size)
            room = size - self._fill
            n = min(room, view.nbytes)
            self._buffer[self._fill : self._fill + n] = view[:n]
            self._fill += n
            view = view[n:]
            if self._fill >= size:
                self._submit_buffer()

    def _commit(self):
        sink = self.sink
        client = sink._client()
        if self._upload_id is None:
            buffer = self._buffer if self._buffer is not None else bytearray()
            try:
                with _PartBody(buffer, self._fill) as body:
                    client.put_object(
                        Bucket=sink.bucket,
                        Key=self.key,
                        Body=body,
                        ContentLength=self._fill,
                        **sink._put_args(),
                    )
            except Exception as exc:
                raise sink._error(exc, f"uploading {self.name!r}") from exc
            self._buffer, self._fill = None, 0
        else:
            if self._fill:
                self._submit_buffer()
            for future in self._futures:
                future.result()
            self._pool.shutdown(wait=True)
            self._raise_failure()
            parts = [
                {"PartNumber": n, "ETag": self._parts[n]} for n in sorted(self._parts)
            ]
            if len(parts) != self._part_number:
                raise SinkError(
                    f"S3 upload of {self.name!r}: "
                    f"{self._part_number - len(parts)} parts missing."
                )
            try:
                client.complete_multipart_upload(
                    Bucket=sink.bucket,
                    Key=self.key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": parts},
                )
            except Exception as exc:
                raise sink._error(
                    exc, f"completing the upload of {self.name!r}"
                ) from exc
            self._upload_id = None
        self._release_buffers()
        stored = sink.stat(self.name)
        if stored.size != self.bytes_written:
            raise SinkError(
                f"S3 object {self.name!r} has {stored.size} bytes after upload, "
                f"{self.bytes_written} were sent."
            )
        return stored

    def _release_buffers(self):
        self._buffer = None
        while not self._free.empty():
            self._free.get_nowait()

    def _abort(self):
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._release_buffers()
        if self._upload_id is None:
            return
        try:
            self.sink._client().abort_multipart_upload(
                Bucket=self.sink.bucket, Key=self.key, UploadId=self._upload_id
            )
        except Exception as exc:
            _logger.warning(
                "Could not abort the S3 multipart upload of %s (%s); "
                "cleanup_incomplete() will remove it later: %s",
                self.key,
                self.sink.describe(),
                exc,
            )
        self._upload_id = None


class S3Sink(Sink):
    """Config keys: ``bucket`` (required), ``prefix``, ``endpoint_url``,
    ``region``, ``access_key``, ``secret_key``, ``session_token``,
    ``addressing_style`` (``auto``/``path``/``virtual``; ``path`` by default
    with a custom endpoint), ``checksum_when_required`` (bool), ``sse``
    (``AES256`` or ``aws:kms``), ``sse_kms_key_id``, ``storage_class``,
    ``part_size`` (bytes, first part, >= 5 MiB), ``max_in_flight`` (parts
    uploading at once), ``part_attempts``, ``retry_backoff`` (seconds),
    ``connect_timeout``, ``read_timeout`` (seconds), ``connect_attempts``,
    ``verify`` (TLS: bool or CA bundle path)."""

    kind = "s3"

    def __init__(
        self,
        bucket,
        prefix="",
        endpoint_url=None,
        region=None,
        access_key=None,
        secret_key=None,
        session_token=None,
        addressing_style=None,
        checksum_when_required=False,
        sse=None,
        sse_kms_key_id=None,
        storage_class=None,
        part_size=DEFAULT_PART_SIZE,
        max_in_flight=4,
        part_attempts=4,
        retry_backoff=0.5,
        connect_timeout=5,
        read_timeout=60,
        connect_attempts=2,
        verify=None,
        **unknown,
    ):
        if unknown:
            raise SinkError(
                "Unknown S3 destination option(s): " + ", ".join(sorted(unknown))
            )
        if not bucket:
            raise SinkError("An S3 destination needs a bucket.")
        if sse not in (None, "", "AES256", "aws:kms"):
            raise SinkError(
                f"Unknown S3 server-side encryption {sse!r}: use 'AES256' or 'aws:kms'."
            )
        if sse_kms_key_id and sse != "aws:kms":
            raise SinkError("sse_kms_key_id needs sse='aws:kms'.")
        if addressing_style not in (None, "", "auto", "path", "virtual"):
            raise SinkError(f"Unknown S3 addressing style {addressing_style!r}.")
        if int(max_in_flight) < 1 or int(part_attempts) < 1:
            raise SinkError("max_in_flight and part_attempts must be >= 1.")
        if part_size and int(part_size) < MIN_PART_SIZE:
            raise SinkError(
                f"The S3 part size must be at least {MIN_PART_SIZE} bytes (5 MiB)."
            )
        self.bucket = bucket
        self.prefix = (prefix or "").strip("/")
        if self.prefix:
            validate_name(self.prefix)
        self.endpoint_url = endpoint_url or None
        self.region = region or None
        self._access_key = access_key or None
        self._secret_key = secret_key or None
        self._session_token = session_token or None
        self.addressing_style = addressing_style or ("path" if endpoint_url else "auto")
        self.checksum_when_required = bool(checksum_when_required)
        self.sse = sse or None
        self.sse_kms_key_id = sse_kms_key_id or None
        self.storage_class = storage_class or None
        self.part_size = int(part_size or DEFAULT_PART_SIZE)
        # 4 parts in flight by default (boto3 uses 10): memory is
        # part_size x (max_in_flight + 1), 40 MiB at 8 MiB parts, inside the
        # engine's 150 MB bound; on the 88 MB archive of bench_backup.py the
        # upload takes 1.33x boto3's upload_fileobj (benchmarks/README.md).
        self.max_in_flight = int(max_in_flight)
        self.part_attempts = int(part_attempts)
        self.retry_backoff = float(retry_backoff)
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self.connect_attempts = max(1, int(connect_attempts))
        self.verify = verify
        self._s3 = None
        self._lock = threading.Lock()

    # plumbing ---------------------------------------------------------------
    def describe(self):
        where = self.endpoint_url or (f"AWS {self.region}" if self.region else "AWS")
        prefix = f"/{self.prefix}" if self.prefix else ""
        return f"s3://{self.bucket}{prefix} at {where}"

    def _client(self):
        with self._lock:
            if self._s3 is None:
                import boto3
                from botocore.config import Config

                options = {
                    "connect_timeout": self.connect_timeout,
                    "read_timeout": self.read_timeout,
                    "retries": {
                        "total_max_attempts": self.connect_attempts,
                        "mode": "standard",
                    },
                    "s3": {"addressing_style": self.addressing_style},
                    "max_pool_connections": self.max_in_flight + 2,
                }
                if self.checksum_when_required:
                    options["request_checksum_calculation"] = "when_required"
                    options["response_checksum_validation"] = "when_required"
                session = boto3.session.Session()
                kwargs = {
                    "endpoint_url": self.endpoint_url,
                    "region_name": self.region or "us-east-1",
                    "aws_access_key_id": self._access_key,
                    "aws_secret_access_key": self._secret_key,
                    "aws_session_token": self._session_token,
                    "config": Config(**options),
                }
                if self.verify is not None:
                    kwargs["verify"] = self.verify
                self._s3 = session.client("s3", **kwargs)
            return self._s3

    def _key(self, name):
        validate_name(name)
        return f"{self.prefix}/{name}" if self.prefix else name

    def _name(self, key):
        return key[len(self.prefix) + 1 :] if self.prefix else key

    def _put_args(self):
        args = {}
        if self.sse:
            args["ServerSideEncryption"] = self.sse
        if self.sse_kms_key_id:
            args["SSEKMSKeyId"] = self.sse_kms_key_id
        if self.storage_class:
            args["StorageClass"] = self.storage_class
        return args

    def _error(self, exc, action):
        """Map a boto3/botocore exception to an engine error (no secrets:
        botocore messages carry the URL and the error code only)."""
        if isinstance(exc, SinkError):
            return exc
        from botocore import exceptions as bex

        where = self.describe()
        if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
            return SinkUnreachableError(
                f"No S3 credentials for {where}: set the access and secret key."
            )
        if isinstance(
            exc,
            bex.EndpointConnectionError
            | bex.ConnectTimeoutError
            | bex.ConnectionClosedError
            | bex.ReadTimeoutError
            | bex.ProxyConnectionError
            | bex.SSLError,
        ):
            return SinkUnreachableError(
                f"S3 endpoint {self.endpoint_url or 'AWS'} unreachable while "
                f"{action} ({where}): {exc}"
            )
        if isinstance(exc, bex.ClientError):
            code, status = _error_code(exc)
            message = exc.response.get("Error", {}).get("Message") or code
            if code in _NOT_FOUND_CODES:
                return SinkObjectNotFound(f"{action}: not found in {where}.")
            if code == "NoSuchBucket":
                return SinkError(
                    f"The bucket {self.bucket!r} does not exist at "
                    f"{self.endpoint_url or 'AWS'}."
                )
            if code in _UNREACHABLE_CODES or status == 403:
                return SinkUnreachableError(
                    f"S3 refused the credentials or access while {action} "
                    f"({where}): {code}: {message}"
                )
            return SinkError(f"S3 error while {action} ({where}): {code}: {message}")
        if isinstance(exc, bex.BotoCoreError):
            return SinkError(f"S3 error while {action} ({where}): {exc}")
        return SinkError(
            f"S3 error while {action} ({where}): {type(exc).__name__}: {exc}"
        )

    # API --------------------------------------------------------------------
    def open_write(self, name, size_hint=None):
        return S3Writer(self, name, size_hint=size_hint)

    def open_read(self, name):
        return self.open_range(name, 0)

    def open_range(self, name, offset=0):
        """A streaming GET (``Range: bytes=<offset>-`` to resume): botocore
        reads the body from the socket as it is consumed, so memory stays
        at one chunk whatever the object's size."""
        offset = _check_offset(offset)
        key = self._key(name)
        args = {"Bucket": self.bucket, "Key": key}
        if offset:
            if offset >= self.stat(name).size:
                return StreamReader(lambda _n: b"", lambda: None, self._error, name)
            args["Range"] = f"bytes={offset}-"
        try:
            body = self._client().get_object(**args)["Body"]
        except Exception as exc:
            raise self._error(exc, f"opening {name!r}") from exc
        return StreamReader(body.read, body.close, self._error, name)

    def list(self, prefix=""):
        prefix = validate_prefix(prefix)
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        objects = []
        try:
            paginator = self._client().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for item in page.get("Contents", ()):
                    key = item["Key"]
                    if key.endswith("/"):
                        continue
                    objects.append(
                        StoredObject(
                            self._name(key),
                            int(item["Size"]),
                            item["LastModified"].astimezone(UTC),
                        )
                    )
        except Exception as exc:
            raise self._error(exc, f"listing {prefix or '/'}") from exc
        return sorted(objects, key=lambda obj: obj.name)

    def stat(self, name):
        try:
            head = self._client().head_object(Bucket=self.bucket, Key=self._key(name))
        except Exception as exc:
            raise self._error(exc, f"reading {name!r}") from exc
        return StoredObject(
            name, int(head["ContentLength"]), head["LastModified"].astimezone(UTC)
        )

    def delete(self, name):
        self.stat(name)
        try:
            self._client().delete_object(Bucket=self.bucket, Key=self._key(name))
        except Exception as exc:
            raise self._error(exc, f"deleting {name!r}") from exc

    def test_connection(self):
        try:
            self._client().head_bucket(Bucket=self.bucket)
        except Exception as exc:
            error = self._error(exc, "checking the bucket")
            if isinstance(error, SinkObjectNotFound):
                error = SinkError(
                    f"The bucket {self.bucket!r} does not exist at "
                    f"{self.endpoint_url or 'AWS'}."
                )
            raise error from exc
        return f"{self.describe()}: bucket reachable"

    def incomplete_uploads(self, prefix=""):
        """(key, upload id, initiated) of the multipart uploads in progress."""
        prefix = validate_prefix(prefix)
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        uploads = []
        try:
            paginator = self._client().get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for upload in page.get("Uploads", ()):
                    uploads.append(
                        (upload["Key"], upload["UploadId"], upload["Initiated"])
                    )
        except Exception as exc:
            raise self._error(exc, "listing incomplete uploads") from exc
        return uploads

    def _last_activity(self, key, upload_id, initiated):
        """When the upload last received a part (its start if none)."""
        latest = initiated
        try:
            paginator = self._client().get_paginator("list_parts")
            for page in paginator.paginate(
                Bucket=self.bucket, Key=key, UploadId=upload_id
            ):
                for part in page.get("Parts", ()):
                    if part.get("LastModified") and part["LastModified"] > latest:
                        latest = part["LastModified"]
        except Exception as exc:
            error = self._error(exc, f"listing the parts of {key!r}")
            if isinstance(error, SinkObjectNotFound) or "NoSuchUpload" in str(exc):
                return None  # completed or aborted meanwhile
            if isinstance(error, SinkUnreachableError):
                raise error from exc
            # e.g. no s3:ListMultipartUploadParts right: its start will do
            _logger.info("%s; using the upload's start time", error)
        return latest.astimezone(UTC)

    def list_incomplete(self, prefix=""):
        """Multipart uploads in progress for names starting with ``prefix``;
        ``modified`` is the time of their last part (a live upload sends
        one every few seconds), not only when they started."""
        found = []
        for key, upload_id, initiated in self.incomplete_uploads(prefix):
            if self.prefix and not key.startswith(self.prefix + "/"):
                continue
            name = self._name(key)
            try:
                validate_name(name)
            except SinkError:
                continue
            modified = self._last_activity(key, upload_id, initiated)
            if modified is None:
                continue
            found.append(
                IncompleteWrite(name, "multipart-upload", (key, upload_id), modified)
            )
        return sorted(found, key=lambda item: (item.name, item.ref))

    def remove_incomplete(self, item):
        key, upload_id = item.ref
        if item.kind != "multipart-upload" or key != self._key(item.name):
            raise SinkError(f"{key} is not an upload of {self.describe()}.")
        try:
            self._client().abort_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id
            )
        except Exception as exc:
            error = self._error(exc, f"aborting the stale upload of {key!r}")
            if isinstance(error, SinkObjectNotFound) or "NoSuchUpload" in str(exc):
                return False
            raise error from exc
        _logger.info(
            "Aborted the stale multipart upload of %s (%s, last activity %s)",
            key,
            self.describe(),
            item.modified,
        )
        return True

    def cleanup_incomplete(self, prefix="", older_than=0.0):
        cutoff = time.time() - older_than
        removed = 0
        for key, upload_id, initiated in self.incomplete_uploads(prefix):
            if initiated.timestamp() > cutoff:
                continue
            try:
                self._client().abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
            except Exception as exc:
                raise self._error(exc, f"aborting the stale upload of {key!r}") from exc
            _logger.info(
                "Aborted the stale multipart upload of %s (%s, started %s)",
                key,
                self.describe(),
                initiated,
            )
            removed += 1
        return removed

    def close(self):
        with self._lock:
            client, self._s3 = self._s3, None
        if client is not None:
            client.close()
