"""Calibration images in binary PPM/PGM: read from their header, ASCII fields only, bounded."""

import numpy as np
import pytest

from segcost.errors import InputError
from segcost.quant.calibration import MAX_IMAGE_PIXELS, read_image


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_ppm_and_pgm_with_comments(tmp_path):
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    ppm = _write(tmp_path, "a.ppm", b"P6\n# made by hand\n3 2\n255\n" + pixels.tobytes())
    assert np.array_equal(read_image(ppm), pixels)
    gray = np.array([[1, 2], [3, 4]], np.uint8)
    pgm = _write(tmp_path, "b.pgm", b"P5 2 2 255 " + gray.tobytes())
    image = read_image(pgm)
    assert image.shape == (2, 2, 3) and np.array_equal(image[..., 2], gray)


@pytest.mark.parametrize("header", [b"P6\n1_0 1\n255\n", b"P6\n+3 1\n255\n", b"P6\n\xd9\xa3 1\n255\n",
                                    b"P3\n1 1\n255\n", b"P6\n1 1\n65535\n"])
def test_header_fields_are_ascii_digits_of_a_binary_8bit_image(tmp_path, header):
    """int() accepted "1_0", "+3" (and Python int of str accepts Unicode digits): refused now."""
    path = _write(tmp_path, "x.ppm", header + bytes(300))
    with pytest.raises(InputError, match="only binary 8-bit"):
        read_image(path)


def test_pixel_count_bounded_before_reading(tmp_path):
    side = 1 << 15
    assert side * side > MAX_IMAGE_PIXELS
    path = _write(tmp_path, "huge.ppm", f"P6\n{side} {side}\n255\n".encode() + bytes(16))
    with pytest.raises(InputError, match="limited to"):
        read_image(path)


@pytest.mark.parametrize("data", [b"P6\n4 4\n255", b"P6\n4 4", b"", b"P6\n4 4\n255\n" + bytes(10)])
def test_truncated(tmp_path, data):
    with pytest.raises(InputError, match="truncated"):
        read_image(_write(tmp_path, "t.ppm", data))
