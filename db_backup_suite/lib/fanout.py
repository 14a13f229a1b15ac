"""One stream, every destination at once.

The backup produces its ciphertext once; :class:`FanOut` hands each block
to one writer thread per destination::

    encrypting writer --> FanOut.write(block)
                            +--> channel (depth blocks) --> thread --> local writer
                            +--> channel (depth blocks) --> thread --> S3 writer
                            +--> channel (depth blocks) --> thread --> SFTP writer

- **Bounded memory.** A block is copied once (the encrypting writer reuses
  its buffer) and the same immutable copy is queued for every destination;
  each channel holds at most ``depth`` blocks (one encrypted chunk each,
  1 MiB by default), so the fan-out adds at most ``depth`` chunks per
  destination to what each sink buffers itself (S3: its part buffers).
- **Back-pressure, up to a bound.** When a destination's channel is full
  the producer waits for it, so a steady slow destination slows the run to
  its pace and every copy stays complete. One that accepts nothing for
  ``stall_timeout`` seconds is dropped: its write is aborted (its thread
  removes its temp file / ``.part`` / multipart upload as soon as its
  sink returns) and the others go on.
- **A failing destination is dropped, the others continue.** Its thread
  records the error; the producer stops feeding it. Only when every
  destination has failed does ``write`` raise (the backup then stops
  pg_dump at once): the one destination's own error, or
  :class:`~.errors.DestinationsFailedError` listing each reason.
- **Atomic per destination.** ``commit()`` asks every live writer to
  commit (each sink publishes its object atomically) and checks the
  stored size; ``abort()`` discards every write still open.

The outcome of each destination is a :class:`DestinationOutcome`;
:func:`overall_state` turns them into ``done`` (all stored), ``partial``
(some) or ``failed`` (none).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass

from .errors import DestinationsFailedError, SinkError, StreamCryptError

_logger = logging.getLogger(__name__)

#: Blocks queued per destination (each one encrypted chunk, 1 MiB by
#: default): 8 MiB of look-ahead lets a destination absorb a pause (an S3
#: part being sent, an SFTP window filling) without stalling the others.
DEFAULT_DEPTH = 8
#: A destination that accepts no block for this long is dropped. Long
#: enough for a sink's own retries (S3: 4 attempts with backoff; SFTP: its
#: 15 s operation timeout), short enough not to hold a nightly run hostage.
DEFAULT_STALL_TIMEOUT = 300.0
#: How long ``abort()`` waits for each writer to discard its upload.
ABORT_WAIT = 30.0
#: How long ``commit()`` waits for a DROPPED destination's thread before
#: closing its connection (it is stuck in its sink; the others are done).
DROP_WAIT = 2.0

DONE, PARTIAL, FAILED = "done", "partial", "failed"


@dataclass
class DestinationOutcome:
    """What happened at one destination.

    ``destination``: the sink's description (never a secret); ``key``: the
    caller's identifier for it (an Odoo destination id, a CLI ``--to``
    value); ``state``: ``done`` or ``failed`` (``pending`` while running);
    ``name``/``size``: the object stored (done), or what was sent before
    the failure; ``error``/``error_type``: why it failed.
    """

    destination: str
    key: object = None
    state: str = "pending"
    name: str | None = None
    size: int = 0
    error: str | None = None
    error_type: str | None = None
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.state == DONE

    def as_dict(self) -> dict:
        return {
            "destination": self.destination,
            "key": self.key,
            "state": self.state,
            "ok": self.ok,
            "name": self.name,
            "size": self.size,
            "error": self.error,
            "error_type": self.error_type,
            "duration": round(self.duration, 3),
        }


def overall_state(outcomes) -> str:
    """``done`` when every destination stored the archive, ``partial`` when
    some did, ``failed`` when none did (or there was none)."""
    outcomes = list(outcomes)
    stored = sum(1 for o in outcomes if o.ok)
    if outcomes and stored == len(outcomes):
        return DONE
    return PARTIAL if stored else FAILED


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Stop:
    """Sentinels on a channel."""

    def __init__(self, what):
        self.what = what

    def __repr__(self):
        return f"<{self.what}>"


_COMMIT = _Stop("commit")
_ABORT = _Stop("abort")


class _Channel:
    """A bounded FIFO of blocks with a 'replace everything by a sentinel'
    operation (dropping a destination frees its queued blocks at once)."""

    def __init__(self, depth: int):
        self._items: collections.deque = collections.deque()
        self._depth = depth
        self._cond = threading.Condition()

    def put(self, item, timeout: float) -> bool:
        with self._cond:
            if len(self._items) >= self._depth:
                self._cond.wait_for(lambda: len(self._items) < self._depth, timeout)
                if len(self._items) >= self._depth:
                    return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def replace_with(self, item):
        with self._cond:
            self._items.clear()
            self._items.append(item)
            self._cond.notify_all()

    def get(self):
        with self._cond:
            self._cond.wait_for(lambda: self._items)
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def clear(self):
        with self._cond:
            self._items.clear()
            self._cond.notify_all()


class _Branch(threading.Thread):
    """One destination: opens its writer, writes what the channel brings,
    commits or aborts; records the outcome. The sink is used by this
    thread only (sinks are not thread-safe)."""

    def __init__(self, key, sink, name, depth, size_hint):
        super().__init__(name=f"fanout-{sink.kind}", daemon=True)
        self.sink = sink
        self.object_name = name
        self.size_hint = size_hint
        self.channel = _Channel(depth)
        self.outcome = DestinationOutcome(destination=sink.describe(), key=key)
        self.failed = threading.Event()
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self.written = 0
        self._lock = threading.Lock()

    # called by the producer and by this thread
    def fail(self, exc: BaseException) -> bool:
        """Record the first failure; True if this call recorded it."""
        with self._lock:
            if self.failed.is_set() or self.outcome.state == DONE:
                return False
            self.error = exc
            self.outcome.state = FAILED
            self.outcome.error = _message(exc)
            self.outcome.error_type = type(exc).__name__
            self.failed.set()
            return True

    def run(self):
        started = time.monotonic()
        writer = None
        try:
            writer = self.sink.open_write(self.object_name, size_hint=self.size_hint)
            while True:
                item = self.channel.get()
                if item is _ABORT:
                    writer.abort()
                    return
                if item is _COMMIT:
                    self._commit(writer)
                    return
                if self.failed.is_set():  # dropped while we were writing
                    writer.abort()
                    return
                writer.write(item)
                self.written += len(item)
        except BaseException as exc:
            if self.fail(exc):
                _logger.warning(
                    "destination %s failed: %s", self.outcome.destination, exc
                )
            if writer is not None:
                try:
                    writer.abort()
                except Exception as abort_exc:  # the next run's cleanup removes it
                    _logger.warning(
                        "aborting the write to %s: %s",
                        self.outcome.destination,
                        abort_exc,
                    )
        finally:
            self.channel.clear()  # free the queued blocks
            self.outcome.size = self.written
            self.outcome.duration = time.monotonic() - started
            self.finished.set()

    def _commit(self, writer):
        stored = writer.commit()
        if stored.size != self.written:
            # the sink reported another size than we wrote: never trust it
            try:
                self.sink.delete(self.object_name)
            except SinkError as exc:
                _logger.error("could not delete %s: %s", self.object_name, exc)
            raise StreamCryptError(
                f"{self.object_name}: the destination stored {stored.size} "
                f"bytes, {self.written} were written; the archive was deleted"
            )
        with self._lock:
            dropped = self.failed.is_set()
            if not dropped:
                self.outcome.state = DONE
                self.outcome.name = stored.name
        if dropped:
            # reported failed (too late): keep what is listed truthful
            _logger.warning(
                "%s stored %s after it was given up; deleting it",
                self.outcome.destination,
                self.object_name,
            )
            self.sink.delete(self.object_name)


class FanOut:
    """A binary writer that copies everything to several destinations.

    ``destinations``: ``(key, sink)`` pairs (sinks already built; each is
    used by one thread only). Use as a context manager or call
    :meth:`start` first; then ``write`` blocks, then :meth:`commit`
    (returns the outcomes) or :meth:`abort`.
    """

    def __init__(
        self,
        destinations,
        name: str,
        *,
        depth: int = DEFAULT_DEPTH,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        size_hint: int | None = None,
    ):
        destinations = list(destinations)
        if not destinations:
            raise SinkError("a backup needs at least one destination")
        if depth < 1:
            raise ValueError("depth must be at least 1")
        if stall_timeout <= 0:
            raise ValueError("stall_timeout must be positive")
        self.name = name
        self.stall_timeout = float(stall_timeout)
        self._branches = [
            _Branch(key, sink, name, depth, size_hint) for key, sink in destinations
        ]
        self.count = 0
        self._started = False
        self._closed = False

    @property
    def outcomes(self) -> list[DestinationOutcome]:
        return [b.outcome for b in self._branches]

    def _live(self):
        return [b for b in self._branches if not b.failed.is_set()]

    def start(self):
        if not self._started:
            self._started = True
            for branch in self._branches:
                branch.start()
        return self

    # file-like ----------------------------------------------------------------
    def writable(self):
        return True

    def flush(self):
        pass

    def write(self, data) -> int:
        if self._closed:
            raise SinkError(f"the write of {self.name!r} is already finished")
        self.start()
        block = bytes(data)  # one copy, shared by every destination
        if not block:
            return 0
        for branch in self._live():
            self._put(branch, block)
        if not self._live():
            self._wait_finished(self._branches, ABORT_WAIT)
            raise self._all_failed()
        self.count += len(block)
        return len(block)

    def _put(self, branch, item):
        deadline = time.monotonic() + self.stall_timeout
        while not branch.failed.is_set():
            if branch.channel.put(item, timeout=min(0.5, self.stall_timeout)):
                return True
            if time.monotonic() >= deadline:
                self._drop(
                    branch,
                    SinkError(
                        f"{branch.outcome.destination} accepted no data for "
                        f"{self.stall_timeout:.0f}s: dropped (the other "
                        "destinations went on)"
                    ),
                )
        return False

    def _drop(self, branch, exc):
        if branch.fail(exc):
            _logger.warning("%s", exc)
        branch.channel.replace_with(_ABORT)

    def _all_failed(self):
        if len(self._branches) == 1 and self._branches[0].error is not None:
            return self._branches[0].error
        return DestinationsFailedError(self.outcomes)

    @staticmethod
    def _wait_finished(branches, timeout):
        deadline = time.monotonic() + timeout
        for branch in branches:
            branch.finished.wait(max(0.0, deadline - time.monotonic()))

    def commit(self, timeout: float | None = None) -> list[DestinationOutcome]:
        """Commit every live destination; return the outcomes (in the order
        given). Raises (like ``write``) only when none stored the archive.
        ``timeout``: how long to wait for the commits (None: as long as the
        sinks' own timeouts take)."""
        self.start()
        self._closed = True
        for branch in self._live():
            self._put(branch, _COMMIT)
        deadline = None if timeout is None else time.monotonic() + timeout
        for branch in self._branches:
            if branch.failed.is_set():
                continue  # dropped: reaped below, never waited for
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not branch.finished.wait(left):
                self._drop(
                    branch,
                    SinkError(
                        f"{branch.outcome.destination} did not finish storing "
                        f"the archive within {timeout:.0f}s"
                    ),
                )
        self._reap(DROP_WAIT)
        if not any(o.ok for o in self.outcomes):
            raise self._all_failed()
        return self.outcomes

    def abort(self, reason: str = "the backup stopped"):
        """Discard every write still open; waits (bounded) for each writer
        to remove what it uploaded."""
        self._closed = True
        if not self._started:
            for branch in self._branches:
                branch.fail(SinkError(reason))
            return
        for branch in self._branches:
            if not branch.finished.is_set():
                branch.fail(SinkError(reason))
                branch.channel.replace_with(_ABORT)
        self._reap(ABORT_WAIT)

    def _reap(self, wait):
        """Wait for the dropped destinations' threads to abort; one stuck in
        its sink's I/O has its connection closed to unblock it (what it
        leaves is removed by the next run's cleanup)."""
        stuck = [b for b in self._branches if not b.finished.is_set()]
        self._wait_finished(stuck, wait)
        for branch in stuck:
            if branch.finished.is_set():
                continue
            _logger.warning(
                "%s is still busy after being dropped: closing its connection",
                branch.outcome.destination,
            )
            try:
                branch.sink.close()
            except Exception as exc:  # best effort to unblock a hung socket
                _logger.info("closing %s: %s", branch.outcome.destination, exc)
            branch.finished.wait(DROP_WAIT)

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None or not self._closed:
            self.abort("the backup stopped" if exc is None else _message(exc))
        return False
