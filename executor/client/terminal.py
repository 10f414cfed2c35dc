"""Where `ccx` writes: the child's bytes to our stdout/stderr, and a status line beside them.

The status line lives on stderr and only when stderr is a terminal. It is drawn with `\\r` and
erased (`\\r` + clear-to-end-of-line) before any other byte goes to a terminal, and it is only
drawn when the terminal's cursor is at the start of a line (the last byte written there was a
newline), so it never overwrites, or mixes into, the child's own output. Nothing but the
child's bytes (or `--json` events) is ever written to stdout.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Sequence

import trio

ERASE = b"\r\x1b[K"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Terminal:
    """The two output streams and the status line."""

    def __init__(self, *, status_line: bool, stdout_fd: int = 1, stderr_fd: int = 2) -> None:
        self.stdout_fd = stdout_fd
        self.stderr_fd = stderr_fd
        self._tty = {fd for fd in (stdout_fd, stderr_fd) if os.isatty(fd)}
        self.status_enabled = status_line and stderr_fd in self._tty
        self._drawn = False
        self._at_line_start = True  # of the terminal the status line shares
        # Writes in flight (in worker threads): no status line may be drawn meanwhile, or it
        # would land before bytes we have already promised the terminal.
        self._writing = 0

    async def write(self, stream: str, data: bytes) -> None:
        """The child's bytes, exactly; blocks (in a thread) while our reader is slow."""
        fd = self.stdout_fd if stream == "stdout" else self.stderr_fd
        if fd in self._tty:
            self.erase()
        self._writing += 1
        try:
            await trio.to_thread.run_sync(_write_all, fd, data)
        finally:
            self._writing -= 1
        if fd in self._tty and data:
            self._at_line_start = data.endswith(b"\n")

    def message(self, text: str) -> None:
        """One line of ccx's own on stderr (never mixed into the child's bytes on a tty)."""
        self.erase()
        prefix = b"" if self._at_line_start or self.stderr_fd not in self._tty else b"\n"
        _write_all(self.stderr_fd, prefix + text.encode() + b"\n")
        if self.stderr_fd in self._tty:
            self._at_line_start = True

    def typed(self) -> None:
        """The user ended a line at the terminal (its echo put the cursor at a line start)."""
        self._at_line_start = True

    def draw(self, text: str) -> None:
        """Show `text` as the status line, if there is one and the cursor allows."""
        if not self.status_enabled or not self._at_line_start or self._writing:
            return
        width = shutil.get_terminal_size().columns - 1
        _write_all(self.stderr_fd, b"\r" + text[:width].encode() + b"\x1b[K")
        self._drawn = True

    def erase(self) -> None:
        """Remove the status line, if drawn."""
        if self._drawn:
            _write_all(self.stderr_fd, ERASE)
            self._drawn = False


def human_bytes(count: int) -> str:
    """1.2 MB, 340 B: for the status line and `ccx ps`."""
    size = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def human_seconds(seconds: float) -> str:
    """4.2s, 3m05s, 2h01m."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


# Bash's $'...' escapes for the characters that have one (ESC is \x1b, which every shell reads).
_C_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\v": "\\v",
    "\f": "\\f",
    "\r": "\\r",
}


def shown_argv(argv: Sequence[str]) -> str:
    """An argv as one line of shell words that reads back as the same argv, for `ccx ps`.

    A word with a character a terminal would act on or hide (a newline, ESC and the other
    controls, Unicode's separators and format characters such as bidirectional overrides) is
    written with bash's $'...' escapes, so a run's command — anyone's, for an admin — can
    neither break the table's rows nor drive the reader's terminal.
    """
    return " ".join(_shown_word(word) for word in argv)


def _shown_word(word: str) -> str:
    if word.isprintable():
        return shlex.quote(word)
    shown = []
    for char in word:
        if char in _C_ESCAPES:
            shown.append(_C_ESCAPES[char])
        elif char in "\\'":
            shown.append("\\" + char)
        elif char.isprintable():
            shown.append(char)
        elif ord(char) < 0x80:
            shown.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            shown.append(f"\\u{ord(char):04x}")
        else:
            shown.append(f"\\U{ord(char):08x}")
    return "$'" + "".join(shown) + "'"
