"""Every file segcost writes (see README "How outputs are written").

`write_atomic` writes one output. A regular file (or a new one) is written to a temporary
`.NAME.*.tmp` beside it and renamed over it, so a reader sees the old file or the new one,
never half of one. A symlink is followed: its target is replaced atomically and the link is
kept. A character device (`/dev/null`) or a FIFO is written through, as shell redirection
does, and never replaced by a regular file. Ctrl-C or SIGTERM during a write removes the
temporary file and leaves the old file intact (SIGKILL cannot be caught: the temporary file
then stays, and is never mistaken for the output). `destination` classifies where an output
path leads; `install` moves a finished file into place the same way.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segcost.errors import InputError
from segcost.fileio.paths import PathLike, check_path_text, file_kind
from segcost.fileio.protected import refuse_same_file


def json_text(document: Any, **options: Any) -> str:
    """`document` as strict JSON text (indent 2 unless given, with a final newline).

    Every JSON report goes through here: json.dumps writes NaN and Infinity by default, which
    RFC 8259 parsers (Python's with parse_constant raising, JavaScript's JSON.parse, jq) refuse.
    Values are checked where they are read; a non-finite number reaching a report anyway is
    refused here as InputError instead of writing an unreadable file.
    """
    options.setdefault("indent", 2)
    try:
        return json.dumps(document, allow_nan=False, **options) + "\n"
    except ValueError as error:
        raise InputError(f"a report value is not a finite number (NaN or infinity), which JSON cannot "
                         f"hold: {error}") from None


@dataclass(frozen=True)
class Destination:
    """Where an output path leads.

    Attributes:
        path: the path as given.
        real: the path with every symlink followed (the file actually written).
        kind: "new" (nothing there yet), "file" (a regular file), "device" (a character
            device) or "fifo".
    """

    path: Path
    real: Path
    kind: str


def destination(path: PathLike, label: str = "output") -> Destination:
    """Follow `path`'s symlinks and classify what an output would be written to.

    Raises:
        InputError: for a directory, block device, socket, a symlink loop, or a missing directory.
    """
    text = check_path_text(path, label)
    real = Path(os.path.realpath(text))
    try:
        status = os.lstat(real)
    except FileNotFoundError:
        if not real.parent.is_dir():
            raise InputError(f"{text}: directory {real.parent} does not exist") from None
        return Destination(Path(text), real, "new")
    except OSError as error:
        raise InputError(f"{text}: cannot write ({error.strerror or error})") from None
    mode = status.st_mode
    if stat.S_ISREG(mode):
        return Destination(Path(text), real, "file")
    if stat.S_ISCHR(mode):
        return Destination(Path(text), real, "device")
    if stat.S_ISFIFO(mode):
        return Destination(Path(text), real, "fifo")
    if stat.S_ISLNK(mode):
        raise InputError(f"{text}: symlink loop; refusing to write")
    raise InputError(f"{text}: is {file_kind(mode)}; refusing to write {label} there")


def write_atomic(path: PathLike, data: str | bytes | Iterable[str | bytes],
                 protected: Mapping[str, Any] | Iterable[Any] = ()) -> None:
    """Write `data` (str, bytes or an iterable of chunks) to `path` without ever leaving half a file.

    A regular or new file is replaced atomically (through a symlink: its target, keeping the
    link); a character device or FIFO is written through. See the module docstring.

    Args:
        path: the output.
        data: the content; str chunks are UTF-8 encoded.
        protected: input files (or {label: path}) that `path` must not be.

    Raises:
        InputError: `path` is one of `protected`, a directory or other special file, or the
            write failed (the old file is then intact and no temporary file is left).
    """
    place = destination(path)
    refuse_same_file(path, protected)
    chunks = [data] if isinstance(data, (str, bytes)) else data
    try:
        if place.kind in ("device", "fifo") and _write_through(place, chunks):
            return
        _replace(place, chunks)
    except OSError as error:
        raise InputError(f"{place.path}: cannot write ({error.strerror or error})") from None


def install(staged: PathLike, path: PathLike) -> None:
    """Move a finished file (e.g. an export made in a temporary folder) to `path` the way `write_atomic` writes.

    A regular or new file (through symlinks) is replaced by a rename; a device or FIFO gets the bytes.
    """
    place = destination(path)
    try:
        if place.kind in ("device", "fifo"):
            with open(staged, "rb") as stream:
                if _write_through(place, iter(lambda: stream.read(1 << 20), b"")):
                    os.unlink(staged)
                    return
        try:
            os.replace(staged, place.real)
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            with open(staged, "rb") as stream:   # the link's target is on another file system: copy
                _replace(place, iter(lambda: stream.read(1 << 20), b""))
    except OSError as error:
        raise InputError(f"{place.path}: cannot write ({error.strerror or error})") from None


def _encoded(chunks: Iterable[str | bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        yield chunk.encode() if isinstance(chunk, str) else chunk


def _write_all(handle: int, chunks: Iterable[str | bytes]) -> None:
    for chunk in _encoded(chunks):
        view = memoryview(chunk)
        while view:
            view = view[os.write(handle, view):]


def _write_through(place: Destination, chunks: Iterable[str | bytes]) -> bool:
    """Write into a device or FIFO (blocks until a FIFO has a reader); False if it became a regular file."""
    handle = os.open(place.real, os.O_WRONLY | getattr(os, "O_NOCTTY", 0))   # no O_CREAT, no O_TRUNC
    try:
        if stat.S_ISREG(os.fstat(handle).st_mode):
            return False   # swapped for a regular file since it was checked: replace it atomically instead
        _write_all(handle, chunks)
        return True
    finally:
        os.close(handle)


class _Terminated(BaseException):
    """SIGTERM arrived during a write (raised by the handler `_interrupts_clean_up` installs)."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated()


@contextlib.contextmanager
def _interrupts_clean_up() -> Iterator[None]:
    """While a temporary file exists, SIGTERM raises instead of killing the process outright.

    Only where SIGTERM still has its default action (a command that handles SIGTERM itself,
    such as `segcost sweep`, keeps its handler) and only in the main thread (the only one
    Python runs signal handlers in). SIGINT already raises KeyboardInterrupt.
    """
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Hold SIGINT/SIGTERM for a few statements (between creating the temporary file and recording its name)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _replace(place: Destination, chunks: Iterable[str | bytes]) -> None:
    """Temporary file beside the real target, then rename over it; the temporary file never outlives a failure."""
    target = place.real
    temp_name: str | None = None
    terminated = False
    with _interrupts_clean_up():
        try:
            with _signals_blocked():
                handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            with os.fdopen(handle, "wb") as stream:
                for chunk in _encoded(chunks):
                    stream.write(chunk)
                _copy_mode(stream.fileno(), target)
            os.replace(temp_name, target)
            temp_name = None
        except _Terminated:
            terminated = True
        finally:
            if temp_name is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp_name)
    if terminated:
        # Cleaned up: now die of SIGTERM as the default action would have (exit status 128+15).
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise KeyboardInterrupt   # not reached unless SIGTERM is blocked


def _copy_mode(handle: int, target: Path) -> None:
    """mkstemp makes 0600: give the new file the old file's mode and owner, or what a plain open() would."""
    try:
        old = os.stat(target)
    except FileNotFoundError:
        os.fchmod(handle, 0o666 & ~_umask())
        return
    os.fchmod(handle, stat.S_IMODE(old.st_mode))
    if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
        with contextlib.suppress(OSError):   # only root (or the owner, for the group) may; otherwise it stays ours
            os.fchown(handle, old.st_uid, old.st_gid)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
