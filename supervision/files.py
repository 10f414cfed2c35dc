"""Opening the files the daemon keeps (journals and their side files) and the files an operator
gives it, so that whatever sits at the path, the open never blocks and never follows a link.

Theory of operation: ``open(2)`` of a FIFO waits for its other end — for ever, if there is
none — and a symlink can lead anywhere, a FIFO included.  Every such open goes through
`open_regular`: ``O_NOFOLLOW`` (a symlink is ELOOP), ``O_NONBLOCK`` for the open itself (a FIFO
opens at once, or is ENXIO when opened for writing without a reader), then ``fstat``: anything
but a regular file is closed and refused with `NotRegularFile`, an OSError like every other
reason the file cannot be used, so the callers' error paths already own it.  The descriptor
returned is blocking again (a regular file ignores O_NONBLOCK; it is cleared so nothing depends
on that).
"""

from __future__ import annotations

import errno
import os
import stat


class NotRegularFile(OSError):
    """The path is a FIFO, a socket, a device or a directory, not a regular file."""

    def __init__(self, path: str, mode: int) -> None:
        if stat.S_ISDIR(mode):  # as the read of a directory would have said
            super().__init__(errno.EISDIR, os.strerror(errno.EISDIR), path)
            return
        kind = stat.filemode(mode)[0]
        what = {"p": "a FIFO", "s": "a socket", "c": "a device", "b": "a device"}.get(kind, kind)
        super().__init__(errno.EINVAL, f"not a regular file ({what})", path)


def open_regular(path: str, flags: int, mode: int = 0o600, *, follow: bool = False) -> int:
    """``os.open(path, flags, mode)`` that only ever opens a regular file, without blocking.

    `follow`: through a symlink too (an operator's file: Kubernetes mounts secrets as links);
    the daemon's own files are never links.

    Raises:
        NotRegularFile: the path is something else (a symlink, unless `follow`, is ELOOP).
        OSError: as ``os.open``.
    """
    nofollow = 0 if follow else os.O_NOFOLLOW
    fd = os.open(path, flags | nofollow | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(path, info.st_mode)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_text(path: str) -> str:
    """The whole of an operator's text file (UTF-8), through `open_regular` (links followed).

    Raises:
        OSError: it cannot be read, or is not a regular file (a FIFO never blocks us).
        UnicodeDecodeError: it is not UTF-8.
    """
    with os.fdopen(open_regular(path, os.O_RDONLY, follow=True), encoding="utf-8") as f:
        return f.read()
