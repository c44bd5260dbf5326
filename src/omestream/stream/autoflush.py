"""Keep a stream's metadata fresh on disk, off the appending thread.

Every ``metadata_interval_s`` a stream pushes partial shards to storage and
rewrites its metadata. The rewrite runs on this thread: a metadata file written
while the file system commits its journal (as it does on every sync of streamed
data) can block for tens of milliseconds, and ``append`` must not wait for that.
``append`` only asks (:meth:`AutoFlush.request`); it also leaves the growth of an
unbounded axis to this thread where the engine allows (:meth:`AutoFlush.request_growth`). The thread also refreshes when the
cadence passes without a frame: a time-lapse may wait minutes for the next one,
and killed in that wait, the frames of the last time point and their metadata
would be lost.

The thread holds the stream only weakly (a dropped stream is still collected). It
takes the stream's lock just long enough to copy the state, then writes outside it;
the stream's ``_sink_lock`` keeps metadata writers one at a time.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from typing import Any

__all__ = ["AutoFlush"]


class AutoFlush:
    def __init__(self, stream: Any, interval_s: float) -> None:
        self._ref = weakref.ref(stream)
        self._interval = interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._refresh_asked = False
        self._growth_asked = False
        self._thread = threading.Thread(target=self._run, name="omestream-autoflush", daemon=True)
        atexit.register(self.stop)  # before weakref finalizers close the engine at exit
        self._thread.start()

    def _run(self) -> None:
        delay: float | None = self._interval
        while delay is not None:
            self._wake.wait(delay)
            stopping = self._stop.is_set()
            self._wake.clear()
            # read after clear(): a request made meanwhile sets its flag, then wakes again
            requested, self._refresh_asked = self._refresh_asked, False
            grow, self._growth_asked = self._growth_asked, False
            stream = self._ref()
            if stream is None:
                return
            try:
                if grow:  # also when stopping: at exit an unclosed stream keeps its frames
                    with stream._sink_lock:
                        stream._apply_growth()
                if stopping:
                    return
                delay = sync_if_due(stream, requested)
            except Exception:
                return
            finally:
                del stream

    def request(self) -> None:
        """Refresh the metadata now (called by ``append`` when the cadence has passed)."""
        self._refresh_asked = True
        self._wake.set()

    def request_growth(self) -> None:
        """Write the stream's pending growth of its unbounded axis now."""
        self._growth_asked = True
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        atexit.unregister(self.stop)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()


def sync_if_due(stream: Any, requested: bool = False) -> float | None:
    """Refresh when asked, or when the cadence has passed and something is new.

    Returns the seconds until the next refresh is due, None once the stream is closed.
    """
    interval = stream.settings.writer.metadata_interval_s
    with stream._sink_lock:
        with stream._lock:
            if stream._closed:
                return None
            if stream._replaying:  # see OMEStream._replaying: nothing new to push
                return interval
            if stream._lease_lost():  # another writer's dataset now: append says so
                return None
            if not requested:  # append already pushed partial shards when it asked
                now = time.monotonic()
                remaining = stream._last_sync + interval - now
                if remaining > 0:
                    return remaining
                if stream._state.frames == getattr(stream, "_synced_frames", -1):
                    return interval
                stream._last_sync = now
                stream._backend.flush()
            stream._synced_frames = stream._state.frames
            snap = stream._state.snapshot()
        stream._sink.update(snap, final=False)
        with stream._lock:
            stream._state.settle(snap)
    return interval
