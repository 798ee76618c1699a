""".npy/.npz calibration arrays, checked from their headers before any data is read.

`np.load` trusts the header: a 100-byte file claiming a [10⁹, 3, 512, 512] array makes it
try to allocate terabytes (or read to the end of a huge file) before any check runs. Here
the header is parsed with numpy's own reader (numpy.lib.format.read_magic /
read_array_header_1_0 / _2_0), the dtype, rank, claimed size and the bytes actually
present are checked, and only the first `count` samples are read: for a C-order array
they are the first count·(bytes per sample) bytes after the header, also inside a
compressed .npz member (read as a stream).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

from segcost.errors import InputError

MAX_READ_BYTES = 2 << 30   # calibration data actually read into memory (2 GiB)


def _header(stream: IO[bytes], where: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) from an .npy stream positioned at its start."""
    try:
        version = npy_format.read_magic(stream)
        reader = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, fortran, dtype = reader(stream, max_header_size=10000)
    except (ValueError, OSError, SyntaxError) as error:
        raise InputError(f"{where}: not a readable .npy header ({error})") from None
    if dtype.hasobject or not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise InputError(f"{where}: dtype {dtype} is not numeric")
    if fortran and len(shape) > 1:
        raise InputError(f"{where}: Fortran-order array; save it with np.ascontiguousarray")
    return tuple(int(dim) for dim in shape), dtype, stream.tell()


def _read_prefix(stream: IO[bytes], shape: tuple[int, ...], dtype: np.dtype, count: int | None, available: int,
                 where: str) -> np.ndarray:
    """The first `count` rows (all when None) of a C-order array whose data starts at the stream position."""
    total = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if total > available:
        raise InputError(f"{where}: the header claims {list(shape)} {dtype} ({total:,} bytes) "
                         f"but the file holds {available:,} bytes of data")
    rows = shape[0] if shape else 1
    if count is not None and shape:
        rows = min(rows, count)
    row_bytes = int(np.prod(shape[1:], dtype=object)) * dtype.itemsize if shape else dtype.itemsize
    wanted = rows * row_bytes
    if wanted > MAX_READ_BYTES:
        raise InputError(f"{where}: {rows} samples of {list(shape[1:])} {dtype} are {wanted:,} bytes, over the "
                         f"{MAX_READ_BYTES >> 30} GiB calibration read limit; use a smaller --calib-size")
    data = stream.read(wanted)
    if len(data) != wanted:
        raise InputError(f"{where}: truncated ({len(data):,} of {wanted:,} data bytes)")
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape((rows, *shape[1:]) if shape else ())


def header_shape(path: Path, key: str | None = None) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an .npy file, or of member `key` (default: the first) of an .npz file."""
    if path.suffix.lower() == ".npz":
        with zipfile.ZipFile(path) as archive:
            member = _member(archive, key, path)
            with archive.open(member) as stream:
                shape, dtype, _ = _header(stream, f"{path}[{member[:-4]}]")
                return shape, dtype
    with open(path, "rb") as stream:
        shape, dtype, _ = _header(stream, str(path))
        return shape, dtype


def read_npy(path: Path, count: int | None = None) -> np.ndarray:
    """The first `count` samples (axis 0) of an .npy file, checked from its header first."""
    size = path.stat().st_size
    with open(path, "rb") as stream:
        shape, dtype, offset = _header(stream, str(path))
        return _read_prefix(stream, shape, dtype, count, size - offset, str(path))


def npz_keys(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return [name[:-4] for name in archive.namelist() if name.endswith(".npy")]
    except (zipfile.BadZipFile, OSError) as error:
        raise InputError(f"{path}: not a readable .npz file ({error})") from None


def _member(archive: zipfile.ZipFile, key: str | None, path: Path) -> str:
    names = [name for name in archive.namelist() if name.endswith(".npy")]
    if not names:
        raise InputError(f"{path}: empty .npz")
    member = f"{key}.npy" if key is not None else names[0]
    if member not in names:
        raise InputError(f"{path}: no array {key!r} (has {', '.join(name[:-4] for name in names)})")
    return member


def read_npz(path: Path, key: str, count: int | None = None) -> np.ndarray:
    """The first `count` samples of member `key` of an .npz file (compressed or not), header-checked."""
    try:
        with zipfile.ZipFile(path) as archive:
            member = _member(archive, key, path)
            info = archive.getinfo(member)
            with archive.open(member) as stream:
                where = f"{path}[{key}]"
                shape, dtype, offset = _header(stream, where)
                return _read_prefix(stream, shape, dtype, count, info.file_size - offset, where)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise InputError(f"{path}: not a readable .npz file ({error})") from None
