"""Calibration images in binary PPM/PGM: read from their header, ASCII fields only, bounded."""

import numpy as np
import pytest

from segcost.errors import InputError
from segcost.quant.images import MAX_IMAGE_PIXELS, read_image


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


def test_png_pixel_count_bounded_before_decoding(tmp_path):
    """A 9000x8000 one-colour PNG is under 2 MB on disk and 1.7 GB once decoded and made float64: refused from its
    header."""
    image_module = pytest.importorskip("PIL.Image")
    path = tmp_path / "big.png"
    image_module.new("RGB", (9000, 8000)).save(path, optimize=True)
    assert path.stat().st_size < 2_000_000 and 9000 * 8000 > MAX_IMAGE_PIXELS
    with pytest.raises(InputError, match="limited to"):
        read_image(path)


def test_large_image_resized_before_it_becomes_float(tmp_path):
    """The input is computed from the uint8 pixels: same values as resizing a float copy, without that copy."""
    from segcost.quant.images import image_to_input, pixels_to_input, resize_bilinear

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    got = image_to_input(pixels, (1, 3, 16, 24), mean, std)
    reference = (resize_bilinear(pixels.astype(np.float64) / 255.0, 16, 24) - np.asarray(mean)) / np.asarray(std)
    assert got.shape == (1, 3, 16, 24) and got.dtype == np.float32
    np.testing.assert_allclose(got[0].transpose(1, 2, 0), reference, rtol=1e-6, atol=1e-6)
    raw = pixels_to_input(pixels, (1, 3, 16, 24), np.dtype(np.uint8), "test")
    assert raw.dtype == np.uint8
    np.testing.assert_array_equal(raw[0].transpose(1, 2, 0), np.rint(resize_bilinear(pixels, 16, 24)).astype(np.uint8))
    same_size = pixels_to_input(pixels, (1, 3, 37, 53), np.dtype(np.uint8), "test")
    np.testing.assert_array_equal(same_size[0].transpose(1, 2, 0), pixels)
