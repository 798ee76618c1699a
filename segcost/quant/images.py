"""Calibration images as model inputs: reading PPM/PGM (here) and PNG/JPEG/BMP (Pillow, optional) as
H×W×3 uint8 pixels within a pixel bound, and resizing them to the model's input (segcost.quant.calibration's
image folders).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segcost.errors import InputError

__all__ = ["MAX_IMAGE_PIXELS", "image_to_input", "pixels_to_input", "read_image", "resize_bilinear"]


def read_image(path: Path) -> np.ndarray:
    """H×W×3 uint8. PPM/PGM are read here; PNG/JPEG/BMP need Pillow (optional).

    The pixel count is checked against MAX_IMAGE_PIXELS from the header, before any pixel is
    decoded (Pillow only warns up to twice its own limit). Raises InputError for an unreadable,
    truncated or oversized image.
    """
    if path.suffix.lower() in (".ppm", ".pgm"):
        return _read_netpbm(path)
    try:
        from PIL import Image
    except ImportError:
        raise InputError(f"{path}: reading {path.suffix} images needs Pillow (pip install pillow); "
                         ".ppm/.pgm and .npy work without it") from None
    try:
        with Image.open(path) as image:
            _check_pixels(path, *image.size)   # read from the header; nothing is decoded yet
            return np.asarray(image.convert("RGB"))
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for bad files
        raise InputError(f"{path}: not a readable image ({type(error).__name__})") from None


# Pixels one calibration image may have: an 8k x 8k photo (192 MiB as RGB bytes, 256 MiB as Pillow decodes it).
# It is resized to the model's input anyway; the bound keeps a small file whose header claims 10⁹ x 10⁹ pixels
# (a compressed PNG of one colour) from being decoded or read.
MAX_IMAGE_PIXELS = 1 << 26
# A binary PPM/PGM header (magic, width, height, maxval and comments) is read from at most this many bytes.
_NETPBM_HEADER_BYTES = 4096


def _check_pixels(path: Path, width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(f"{path}: {width:,} x {height:,} pixels; calibration images are limited to "
                         f"{MAX_IMAGE_PIXELS:,} pixels")


def _read_netpbm(path: Path) -> np.ndarray:
    """A binary 8-bit PPM (P6) or PGM (P5) as H×W×3 uint8, per the Netpbm format's specification
    (netpbm.sourceforge.net/doc/ppm.html): whitespace-separated ASCII decimal header fields,
    `#` comments to the end of a line, one whitespace byte, then the raster. Written here
    because numpy has no reader and Pillow is optional; only the header and the raster's
    own bytes are read."""
    with open(path, "rb") as stream:
        head = stream.read(_NETPBM_HEADER_BYTES)
        tokens, position = _netpbm_header(head, path)
        magic = tokens[0]
        if magic not in (b"P5", b"P6") or not all(token.isdigit() and token.isascii() for token in tokens[1:]):
            raise InputError(f"{path}: only binary 8-bit PPM (P6) / PGM (P5) are supported")
        width, height, maxval = (int(token) for token in tokens[1:4])   # ASCII digits only, checked above
        if width <= 0 or height <= 0 or maxval != 255:
            raise InputError(f"{path}: only binary 8-bit PPM (P6) / PGM (P5) are supported")
        _check_pixels(path, width, height)
        channels = 3 if magic == b"P6" else 1
        wanted = width * height * channels
        stream.seek(position + 1)
        data = stream.read(wanted)
    if len(data) < wanted:
        raise InputError(f"{path}: truncated pixel data")
    image = np.frombuffer(data, np.uint8).reshape(height, width, channels)
    return np.repeat(image, 3, axis=2) if channels == 1 else image


def _netpbm_header(data: bytes, path: Path) -> tuple[list[bytes], int]:
    """The four header fields (magic, width, height, maxval) and the offset just past the last one."""
    tokens: list[bytes] = []
    position = 0
    while len(tokens) < 4:
        while position < len(data) and data[position:position + 1].isspace():
            position += 1
        if data[position:position + 1] == b"#":
            position = data.find(b"\n", position) + 1 or len(data)
            continue
        start = position
        while position < len(data) and not data[position:position + 1].isspace():
            position += 1
        if start == position or position == len(data):
            raise InputError(f"{path}: truncated PPM/PGM header")
        tokens.append(data[start:position])
    return tokens, position


def image_to_input(image: np.ndarray, input_shape: tuple[int, ...], mean, std) -> np.ndarray:
    """Bilinear resize to the model's H×W, scale to [0, 1], normalize, HWC → NCHW float32.

    `image`: H×W×3 uint8 pixels, or floats in [0, 1].
    """
    _, channels, height, width = input_shape
    if channels != 3:
        raise InputError(f"images give 3 channels; the model input has {channels}")
    resized = _unit_at_size(image, height, width)
    normalized = (resized - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return normalized.transpose(2, 0, 1)[None].astype(np.float32)


def _unit_at_size(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`image` (uint8 pixels or floats in [0, 1]) at height×width, in [0, 1]. Pixels are resized before
    they are scaled, so a large photo is never copied as floats (4-8 bytes per value) at full size."""
    scale = 255.0 if image.dtype == np.uint8 else 1.0
    if image.shape[:2] != (height, width):
        image = resize_bilinear(image, height, width)
    return image / scale


def pixels_to_input(image: np.ndarray, input_shape: tuple[int, ...], dtype: np.dtype, where: object) -> np.ndarray:
    """An H×W×3 image (uint8 pixels, or floats in [0, 1]) as integer NCHW pixels 0..255 (bilinear resize to the
    input's H×W, rounded)."""
    _, channels, height, width = input_shape
    if channels != 3:
        raise InputError(f"images give 3 channels; the model input has {channels}")
    info = np.iinfo(dtype)
    if info.min > 0 or info.max < 255:
        raise InputError(f"{where}: images are pixels 0..255, which the model's {dtype} input cannot hold; give "
                         "--calib data in its range (.npy/.npz)")
    pixels = np.rint(np.clip(_unit_at_size(image, height, width), 0.0, 1.0) * 255.0)
    return pixels.transpose(2, 0, 1)[None].astype(dtype)


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize of an H×W×C image (numpy only), as float64; only the rows and columns the
    output samples are gathered."""
    in_h, in_w = image.shape[:2]
    ys = np.clip((np.arange(height) + 0.5) * in_h / height - 0.5, 0, in_h - 1)
    xs = np.clip((np.arange(width) + 0.5) * in_w / width - 0.5, 0, in_w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, in_h - 1), np.minimum(x0 + 1, in_w - 1)
    wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    above, below = image[y0], image[y1]   # out_h × W_in rows, each gathered once
    top = above[:, x0] * (1 - wx) + above[:, x1] * wx
    bottom = below[:, x0] * (1 - wx) + below[:, x1] * wx
    return top * (1 - wy) + bottom * wy
