"""The few Linux calls Python's ``os`` module does not offer, through ctypes.

Each helper reports whether the call exists so callers can fall back to portable
code elsewhere (macOS, Windows, old kernels).
"""

from __future__ import annotations

import ctypes
import errno
import os

__all__ = [
    "ANONYMOUS_FILES",
    "DIRECT_IO_ALIGN",
    "has",
    "libc",
    "link_anonymous",
    "open_anonymous",
    "set_direct",
]

# Direct I/O wants buffer address, length and file offset in whole logical blocks
# (512 B or 4 KiB); a page satisfies both.
DIRECT_IO_ALIGN = 4096

_AT_FDCWD = -100
_AT_SYMLINK_FOLLOW = 0x400
_loaded: list[ctypes.CDLL | None] = []  # the C library, looked up once


def libc() -> ctypes.CDLL | None:
    if not _loaded:
        try:
            _loaded.append(ctypes.CDLL(None, use_errno=True))
        except OSError:
            _loaded.append(None)
    return _loaded[0]


def has(name: str) -> bool:
    lib = libc()
    return lib is not None and hasattr(lib, name)


# Unnamed files need O_TMPFILE, and /proc to link them (see link_anonymous).
ANONYMOUS_FILES = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")


def open_anonymous(directory: str) -> int | None:
    """A new file without a name in ``directory`` (O_TMPFILE), or None where this
    system or the directory's file system has none.

    Written in full and then given its name with :func:`link_anonymous`, a file
    appears complete or not at all, like a temporary file renamed into place, with
    one directory operation instead of three; a crash leaves no stray temporary file.
    """
    if not ANONYMOUS_FILES:
        return None
    try:
        return os.open(directory, os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return None
        raise


def link_anonymous(fd: int, target: str) -> None:
    """Give the file from :func:`open_anonymous` the name ``target``.

    Raises ``FileExistsError`` when ``target`` exists: links never replace.
    """
    lib = libc()
    if lib is None or not has("linkat"):
        raise OSError(errno.ENOSYS, "linkat is not available")
    source = f"/proc/self/fd/{fd}".encode()
    if lib.linkat(_AT_FDCWD, source, _AT_FDCWD, os.fsencode(target), _AT_SYMLINK_FOLLOW):
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), target)


def set_direct(fd: int, on: bool) -> bool:
    """Turn direct I/O (``O_DIRECT``: no page cache) on or off for ``fd``.

    False when this system or file system has no direct I/O.
    """
    flag = getattr(os, "O_DIRECT", 0)
    try:
        import fcntl
    except ImportError:  # Windows
        return False
    if not flag:
        return False
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | flag if on else flags & ~flag)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise
    return True
