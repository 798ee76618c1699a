"""Every file segcost writes, and the small text files it reads besides models.

Writing (see README "How outputs are written"):

* `OutputPlan.check` takes all output paths of a command and all its input paths, and refuses,
  before anything is written, an output that is the same file as an input (same device and
  inode, so through symlinks and hard links), two outputs that are one file, an output that is
  a directory, a block device or a socket, and an output whose directory does not exist.
* `write_atomic` writes one output. A regular file (or a new one) is written to a temporary
  `.NAME.*.tmp` beside it and renamed over it, so a reader sees the old file or the new one,
  never half of one. A symlink is followed: its target is replaced atomically and the link is
  kept. A character device (`/dev/null`) or a FIFO is written through, as shell redirection
  does, and never replaced by a regular file. Ctrl-C or SIGTERM during a write removes the
  temporary file and leaves the old file intact (SIGKILL cannot be caught: the temporary file
  then stays, and is never mistaken for the output).

Reading: `read_text_file` (and `read_toml_file`, `read_json_file` on top of it) is the one
reader of configs, budgets files, baselines, target profiles and sweep specs. It opens without
blocking, checks the opened descriptor is a regular file no larger than a cap, and reads at
most that many bytes, so a FIFO, `/dev/zero` or a symlink to either is refused at once.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import signal
import stat
import tempfile
import threading
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segcost.errors import InputError

MAX_CONFIG_BYTES = 1 << 20      # budgets files, pyproject.toml, target profiles, sweep specs: 1 MiB
MAX_BASELINE_BYTES = 64 << 20   # baselines list every layer: 64 MiB is ~400k layers

PathLike = str | os.PathLike


# ----------------------------------------------------------------------------------------- reading

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


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "a special file"


def read_text_file(path: PathLike, what: str, max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """The UTF-8 text of a small regular file (config, baseline, profile, sweep spec).

    Args:
        path: the file (a symlink to a regular file is fine).
        what: what the file is, for messages ("budgets file", "baseline").
        max_bytes: size cap in bytes.

    Raises:
        InputError: naming the file, when it is missing, not a regular file (FIFO, device,
            directory: checked on the opened descriptor, so nothing blocks or streams
            forever), larger than `max_bytes`, or not UTF-8.
    """
    text_path = check_path_text(path, what)
    try:
        # O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever.
        handle = os.open(text_path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise InputError(f"{text_path}: cannot read: no such {what}") from None
    except OSError as error:
        raise InputError(f"{text_path}: cannot read {what} ({error.strerror or error})") from None
    try:
        status = os.fstat(handle)
        if not stat.S_ISREG(status.st_mode):
            raise InputError(f"{text_path}: {what} must be a regular file, not {_kind(status.st_mode)}")
        if status.st_size > max_bytes:
            raise InputError(f"{text_path}: {what} is {status.st_size:,} bytes; the limit is {max_bytes:,}")
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(handle, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise InputError(f"{text_path}: {what} grew beyond the limit of {max_bytes:,} bytes while being read")
    except OSError as error:
        raise InputError(f"{text_path}: cannot read {what} ({error.strerror or error})") from None
    finally:
        os.close(handle)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{text_path}: {what} is not UTF-8 text (byte {error.start})") from None


def read_toml_file(path: PathLike, what: str) -> dict[str, Any]:
    """The TOML document of a config-like file (see `read_text_file`); syntax errors name the file."""
    text = read_text_file(path, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{os.fspath(path)}: invalid TOML ({what} is not valid TOML: {error})") from None
    except RecursionError:
        raise InputError(f"{os.fspath(path)}: {what} is nested too deeply") from None


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def read_json_file(path: PathLike, what: str, max_bytes: int = MAX_BASELINE_BYTES) -> Any:
    """The JSON document of a file (see `read_text_file`); NaN, Infinity and out-of-range floats are errors."""
    text = read_text_file(path, what, max_bytes)
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise InputError(f"{os.fspath(path)}: {what} is nested too deeply") from None
    except ValueError as error:   # JSONDecodeError, and ints past Python's digit limit
        raise InputError(f"{os.fspath(path)}: {what} is not valid JSON ({error})") from None


# ----------------------------------------------------------------------------------------- writing

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
    raise InputError(f"{text}: is {_kind(mode)}; refusing to write {label} there")


def _identity(path: PathLike) -> tuple[int, int] | None:
    """(device, inode) of an existing file or directory; None when it is missing or not a path."""
    try:
        status = os.stat(os.fspath(path))
    except (OSError, ValueError, TypeError):
        return None
    if stat.S_ISCHR(status.st_mode):
        return None   # /dev/null as an "input" and an output is not a clash
    return status.st_dev, status.st_ino


def _flatten(inputs: Mapping[str, Any] | Iterable[Any]) -> list[tuple[str, str]]:
    """(label, path) pairs from {label: path | [paths] | None} or a plain iterable of paths."""
    items = inputs.items() if isinstance(inputs, Mapping) else (("input", value) for value in inputs)
    pairs = []
    for label, value in items:
        values = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
        pairs += [(label, os.fspath(item)) for item in values if item is not None and item != ""]
    return pairs


# (device, inode) -> (label, mtime_ns, size) of every file the model loader has opened as an input in
# this process: the model file and its external-data files (segcost.ir.datafile.HeldFile). A command
# names its inputs before it loads the model, so the data files a model points to are only known
# here. They stay protected after they are closed (a command may write after releasing the graph);
# mtime and size tell a file read here from a new file that reuses a deleted file's inode.
_READ_INPUTS: dict[tuple[int, int], tuple[str, int, int]] = {}


def note_held_input(fd: int, label: str) -> None:
    """Remember an input file opened by descriptor (a model or its external data): no output may replace it."""
    status = os.fstat(fd)
    if stat.S_ISREG(status.st_mode):
        _READ_INPUTS[status.st_dev, status.st_ino] = (label, status.st_mtime_ns, status.st_size)


def forget_read_inputs() -> None:
    """Start a new command: files earlier commands of this process read are no longer its inputs
    (OutputPlan.check and the Python API's writers call it before loading their model)."""
    _READ_INPUTS.clear()


def _read_input_at(output: PathLike) -> str | None:
    """The label of the input file read by this process that `output` is (symlinks followed), or None."""
    try:
        status = os.stat(os.fspath(output))
    except (OSError, ValueError, TypeError):
        return None
    seen = _READ_INPUTS.get((status.st_dev, status.st_ino))
    if seen is None or (seen[1], seen[2]) != (status.st_mtime_ns, status.st_size):
        return None
    return seen[0]


def refuse_same_file(output: PathLike, inputs: Mapping[str, Any] | Iterable[Any], label: str = "output") -> None:
    """InputError when `output` is the same file as one of `inputs` or as a file the model loader has read
    (its external data; `note_held_input`), by device + inode with symlinks followed."""
    mine = _identity(output)
    if mine is None:
        return
    read = _read_input_at(output)
    if read is not None:
        raise InputError(f"{os.fspath(output)} ({label}) is the same file as {read}, which the model reads; "
                         "refusing to overwrite an input")
    for input_label, source in _flatten(inputs):
        if _identity(source) == mine:
            named = f"the input {source}" if input_label == "input" else f"{input_label} {source}"
            raise InputError(f"{os.fspath(output)} ({label}) is the same file as {named}; "
                             "refusing to overwrite an input")


@dataclass(frozen=True)
class OutputPlan:
    """The outputs of one command, checked together against its inputs before the first write.

    Build it with `OutputPlan.check` at the start of a command; write with `plan.write`.
    """

    outputs: tuple[tuple[str, Destination], ...]
    inputs: Mapping[str, tuple[str, ...]]

    @classmethod
    def check(cls, outputs: Mapping[str, PathLike | None], inputs: Mapping[str, Any] | Iterable[Any] = ()
              ) -> OutputPlan:
        """Validate every output (see `destination`) against every input and against each other.

        Args:
            outputs: {label: path} of everything the command may write ("-o", "--report"); None is skipped.
            inputs: {label: path, paths or None} of everything it reads (model, config, baseline,
                profile, calibration data, sweep spec).

        Raises:
            InputError: naming the output and the clash; nothing has been written.
        """
        forget_read_inputs()   # a new command: only what it loads from now on is its input
        planned: list[tuple[str, Destination]] = []
        grouped: dict[str, tuple[str, ...]] = {}
        for input_label, source in _flatten(inputs):
            grouped[input_label] = (*grouped.get(input_label, ()), source)
        for label, path in outputs.items():
            if path is None:
                continue
            place = destination(path, label)
            refuse_same_file(path, grouped, label)
            for other_label, other in planned:
                same_new = place.kind == "new" and place.real == other.real
                if (same_new or (place.kind in ("file", "fifo") and _identity(place.real) == _identity(other.real))):
                    raise InputError(f"{os.fspath(path)} ({label}) and {other.path} ({other_label}) are the same "
                                     "file; give different outputs")
            planned.append((label, place))
        return cls(tuple(planned), grouped)

    def write(self, path: PathLike, data: str | bytes | Iterable[str | bytes]) -> None:
        """Write one planned output (`write_atomic`, with the inputs checked again).

        Every planned output is checked again first, against the files the model loader has opened
        since the plan was made (a model's external data): no output is written when any would
        replace one.
        """
        for label, place in self.outputs:
            refuse_same_file(place.path, (), label)
        write_atomic(path, data, protected=self.inputs)


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
