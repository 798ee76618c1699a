"""An open data file that weights are read from by offset, never reopened by name.

The loader opens the model file and each external-data file exactly once, checks the
descriptor (regular file, inside the model's folder), and hands this object to the IR.
Every later read goes through the same descriptor with ``pread``, so swapping a file or a
symlink after the check cannot make segcost read another file (no time-of-check /
time-of-use window). The descriptor is closed when the last Initializer holding it goes.
"""

from __future__ import annotations

import os

import numpy as np

from segcost.errors import InputError
from segcost.fileio.protected import note_held_input


class HeldFile:
    """A checked, open file: ``label`` names it in messages, ``size`` is its size when opened (bytes)."""

    __slots__ = ("__weakref__", "fd", "label", "size")

    def __init__(self, fd: int, label: str):
        self.fd = fd
        self.label = label
        self.size = os.fstat(fd).st_size
        note_held_input(fd, label)   # no output of this process may replace it

    def read(self, offset: int, length: int) -> bytes:
        """`length` bytes at `offset`; InputError when the file has shrunk since it was checked."""
        return self.read_into(bytearray(length), offset).tobytes()

    def read_array(self, dtype: np.dtype, count: int, offset: int) -> np.ndarray:
        """A writable 1-D array of `count` elements of `dtype` read from `offset` (one pread per MiB)."""
        array = np.empty(count, dtype=dtype)
        self.read_into(array, offset)
        return array

    def read_into(self, buffer, offset: int) -> memoryview:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view):
            got = os.preadv(self.fd, [view[done:]], offset + done)
            if got <= 0:
                raise InputError(f"{self.label}: the file ended at byte {offset + done} while reading "
                                 f"{len(view)} bytes at {offset} (changed after it was checked?)")
            done += got
        return view

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass

    def __repr__(self) -> str:
        return f"HeldFile({self.label!r}, fd={self.fd}, size={self.size})"
