"""Output files are written whole or not at all, and never over the user's input."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from segcost.errors import InputError


def write_atomic(path: str | os.PathLike, data, protected: tuple[str | os.PathLike, ...] = ()) -> None:
    """Write `data` (str, bytes or an iterable of str chunks) to a temp file beside `path`, then rename it.

    Refuses a `path` that is (or resolves to) one of the `protected` input files.
    """
    target = Path(path)
    for source in protected:
        if source is not None and Path(source).exists() and target.exists() and target.samefile(source):
            raise InputError(f"{target}: refusing to overwrite the input model")
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(f"{target}: directory {directory} does not exist")
    chunks = [data] if isinstance(data, (str, bytes)) else data  # or an iterable of str chunks
    try:
        handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
        with os.fdopen(handle, "wb") as stream:
            for chunk in chunks:
                stream.write(chunk.encode() if isinstance(chunk, str) else chunk)
        # mkstemp creates 0600; give the file the mode a plain open() would (or the old file's).
        mode = target.stat().st_mode & 0o777 if target.exists() else 0o666 & ~_umask()
        os.chmod(temp_name, mode)
        os.replace(temp_name, target)
    except OSError as error:
        if "temp_name" in locals() and os.path.exists(temp_name):
            os.unlink(temp_name)
        raise InputError(f"{target}: cannot write ({error.strerror})") from None


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
