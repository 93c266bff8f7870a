"""Reading the small files the configuration names, without trusting what they are.

A path in a configuration may name anything: a FIFO (reading it blocks until someone writes),
``/dev/zero`` (endless), a directory, a huge file. :func:`read_regular_file` reads only a regular
file, up to a cap, and never blocks: it checks with ``stat`` first, opens with ``O_NONBLOCK``
(so a FIFO swapped in after the check cannot hang the open) and checks the opened file again.
Every refusal is a :class:`ValueError` whose message says what the path is and what to do.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def kind_problem(mode: int) -> str | None:
    """``"is a FIFO; it must be a regular file"`` for anything but a regular file, else None."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return f"is {kind}; it must be a regular file"


def size_text(cap: int) -> str:
    """``65536`` → ``"64 KiB"``."""
    if cap % (1024 * 1024) == 0:
        return f"{cap // (1024 * 1024)} MiB"
    if cap % 1024 == 0:
        return f"{cap // 1024} KiB"
    return f"{cap} bytes"


def read_regular_file(path: Path, cap: int, what: str = "file") -> bytes:
    """The content of the regular file ``path``, at most ``cap`` bytes, or a ValueError.

    ``what`` names the file in messages (``"file"``, ``"the configuration"``).
    """
    shown = f"{what} {str(path)!r}"
    if "\x00" in str(path):
        raise ValueError("the path contains a NUL character")
    try:
        before = os.stat(path)
    except OSError as exc:
        raise ValueError(f"cannot read {shown}: {exc.strerror}") from None
    problem = kind_problem(before.st_mode)
    if problem is not None:
        raise ValueError(f"{shown} {problem}")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ValueError(f"cannot read {shown}: {exc.strerror}") from None
    try:
        opened = os.fstat(fd)
        problem = kind_problem(opened.st_mode)
        if problem is not None:  # swapped between stat and open
            raise ValueError(f"{shown} {problem}")
        too_big = f"{shown} is larger than {size_text(cap)}; is it the right file?"
        if opened.st_size > cap:
            raise ValueError(too_big)
        chunks: list[bytes] = []
        left = cap + 1  # one byte more than allowed tells a file that grew past the cap
        while left > 0:
            try:
                chunk = os.read(fd, min(left, 65536))
            except OSError as exc:
                raise ValueError(f"cannot read {shown}: {exc.strerror}") from None
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > cap:
            raise ValueError(too_big)
        return data
    finally:
        os.close(fd)
