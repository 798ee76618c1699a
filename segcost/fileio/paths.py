"""Paths as the user gives them, and the names of file kinds for messages."""

from __future__ import annotations

import os
import stat

from segcost.errors import InputError

PathLike = str | os.PathLike


def check_path_text(path: PathLike, what: str) -> str:
    """`path` as text; an InputError naming `what` when it is empty or holds a NUL byte (no OS accepts one)."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text:
        raise InputError(f"{what}: empty path")
    if "\0" in text:
        raise InputError(f"{what}: path {text!r} contains a NUL byte")
    return text


def file_kind(mode: int) -> str:
    """What `mode` (an st_mode) is, for messages: "a directory", "a FIFO", "a regular file", ..."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "a special file"
