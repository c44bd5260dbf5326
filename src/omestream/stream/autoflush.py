"""Keep a stream's data and metadata fresh on disk while no frame arrives.

A stream refreshes partial shards and metadata on its cadence when frames are
appended. A time-lapse may then wait minutes for the next frame; killed in that
wait, the frames of the last time point and their metadata would be lost. This
thread does the same refresh when the cadence passes without a frame. It holds the
stream only weakly (a dropped stream is still collected) and takes the stream's
lock, so it never runs at the same time as ``append``.
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
        self._thread = threading.Thread(target=self._run, name="omestream-autoflush", daemon=True)
        atexit.register(self.stop)  # before weakref finalizers close the engine at exit
        self._thread.start()

    def _run(self) -> None:
        delay: float | None = self._interval
        while delay is not None and not self._stop.wait(delay):
            stream = self._ref()
            if stream is None:
                return
            try:
                delay = sync_if_due(stream)
            except Exception:
                return
            finally:
                del stream

    def stop(self) -> None:
        self._stop.set()
        atexit.unregister(self.stop)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()


def sync_if_due(stream: Any) -> float | None:
    """Refresh when the cadence has passed since the last refresh and something is new.

    Returns the seconds until the next refresh is due, None once the stream is closed.
    """
    interval = stream.settings.writer.metadata_interval_s
    with stream._lock:
        if stream._closed:
            return None
        now = time.monotonic()
        remaining = stream._last_sync + interval - now
        if remaining > 0:
            return remaining
        if stream._state.frames == getattr(stream, "_synced_frames", -1):
            return interval
        stream._last_sync = now
        stream._synced_frames = stream._state.frames
        stream._backend.flush()
        stream._sink.update(stream._state, final=False)
    return interval
