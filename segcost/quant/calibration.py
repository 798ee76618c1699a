"""Calibration and evaluation inputs: image folders, .npy/.npz arrays, or a synthetic generator.

Every source yields feeds ``{input_name: array of the model's input shape}`` in the dtype it was
opened for (`open_source(..., dtype=)`, the model input's dtype; float32 by default); a source
that cannot give that (wrong shape, empty folder, files that are not images or arrays, NaN or
±Inf values — also values beyond float32's range) is an InputError naming the file, raised
before any quantization work starts.

Integer inputs (a uint8 image with the normalisation inside the graph) take raw pixels:
images are resized and rounded to 0..255 without mean/std; synthetic shape images are
their pixels ×255 rounded (other channel counts: uniform integers 0..255); .npy/.npz data
is fed as stored when it holds whole numbers inside the dtype's range — integer files, or a
float file of unnormalized pixels — and refused otherwise (a normalized float file cannot be
turned back into pixels). A float input takes any numeric data, cast to its dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import onnx

from segcost.errors import InputError
from segcost.fileio.paths import check_path_text
from segcost.ir import Graph
from segcost.quant.arrays import header_shape, npz_keys, read_npy, read_npz
from segcost.quant.images import image_to_input, pixels_to_input, read_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm")
ARRAY_SUFFIXES = (".npy", ".npz")
# Samples one source may give. Calibration runs the model once per sample and the accuracy report
# twice (float and int8); 10,000 runs of a segmentation model take hours on a CPU, while
# min/max and histogram ranges settle within a few hundred samples. A larger count is refused
# before any work (a typo such as 100000000000 used to run without limit).
MAX_SAMPLES = 10_000
# torchvision's ImageNet statistics: the zoo's models are trained with them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Sample:
    feeds: dict[str, np.ndarray]
    label: np.ndarray | None = None  # H×W class indices when the source has labels


class CalibrationSource:
    """A finite, re-iterable list of samples for a model with the given input name and shape.

    `dtype` is the dtype of the feeds; `reopen(dtype)`, when set, opens the same data for
    another input dtype (raw pixels for an integer input, module docstring).
    """

    def __init__(self, input_name: str, input_shape: tuple[int, ...], loaders: list[Callable[[], Sample]],
                 description: str, dtype: np.dtype | None = None,
                 reopen: Callable[[np.dtype], CalibrationSource] | None = None):
        self.input_name = input_name
        self.input_shape = input_shape
        self.loaders = loaders
        self.description = description
        self.dtype = np.dtype(np.float32) if dtype is None else np.dtype(dtype)
        self.reopen = reopen

    def __len__(self) -> int:
        return len(self.loaders)

    def __iter__(self) -> Iterator[Sample]:
        for load in self.loaders:
            yield load()


def open_source(spec: str, input_name: str, input_shape: tuple[int, ...], size: int = 32, seed: int = 0,
                mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
                split: str = "val", dtype: np.dtype | type = np.float32) -> CalibrationSource:
    """`spec` is "synthetic", a folder of images/arrays, or a .npy/.npz file; at most `size` samples,
    fed as `dtype` (the model input's; the conversion rules are in the module docstring).

    Raises:
        InputError: unusable data (module docstring), or `size` outside 1..MAX_SAMPLES.
    """
    source = _open(spec, input_name, input_shape, size, seed, mean, std, split, np.dtype(dtype))
    source.dtype = np.dtype(dtype)
    source.reopen = partial(open_source, spec, input_name, input_shape, size, seed, mean, std, split)
    return source


def _open(spec: str, input_name: str, input_shape: tuple[int, ...], size: int, seed: int, mean, std, split: str,
          dtype: np.dtype) -> CalibrationSource:
    check_sample_count(size, "sample count")
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise InputError(f"input {input_name!r} is {dtype}: calibration data can only be fed to a float or integer "
                         "input")
    if len(input_shape) != 4:
        raise InputError(f"calibration needs an N×C×H×W input; {input_name!r} has shape {list(input_shape)}")
    if spec == "synthetic":
        return _synthetic(input_name, input_shape, size, seed, split, dtype)
    path = Path(check_path_text(spec, "calibration/evaluation data"))   # "" is not the working folder (Path(""))
    if not path.exists():
        raise InputError(f"calibration data {spec!r}: no such file or folder")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        usable = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES + ARRAY_SUFFIXES]
        if not files:
            raise InputError(f"calibration folder {spec} is empty")
        if not usable:
            raise InputError(f"calibration folder {spec} has no images or .npy/.npz files "
                             f"(found e.g. {files[0].name})")
        usable = usable[:size]
        loaders = [_file_loader(p, input_name, input_shape, mean, std, dtype) for p in usable]
        loaders[0]()  # fail now, with the file's name, rather than halfway through calibration
        return CalibrationSource(input_name, input_shape, loaders, f"{len(usable)} files from {spec}")
    if path.suffix.lower() in ARRAY_SUFFIXES:
        return _array_file(path, input_name, input_shape, size, dtype)
    raise InputError(f"calibration data {spec!r}: expected a folder, a .npy/.npz file or 'synthetic'")


def in_input_dtype(source: CalibrationSource, graph: Graph) -> CalibrationSource:
    """`source` with samples in the dtype of the model's input: float16 models take float16 feeds, a uint8
    image input raw pixels 0..255 (segcost.quant.calibration's rules; onnxruntime refuses any other
    feed dtype: "Unexpected input data type").

    Raises:
        InputError: the data cannot be fed in that dtype (e.g. a normalized float file for a uint8 input).
    """
    dtype = input_dtype(graph, source.input_name)
    if dtype == source.dtype:
        return source
    if source.reopen is not None:
        return source.reopen(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise InputError(f"input {source.input_name!r} is {dtype}; {source.description} cannot be fed to it")

    def cast(load: Callable[[], Sample]) -> Sample:
        sample = load()
        return Sample({name: value.astype(dtype) for name, value in sample.feeds.items()}, sample.label)

    return CalibrationSource(source.input_name, source.input_shape, [partial(cast, load) for load in source.loaders],
                             f"{source.description}, as {dtype}", dtype)


def input_dtype(graph: Graph, name: str) -> np.dtype:
    """The numpy dtype of graph input `name` (float32 when undeclared): what `open_source(..., dtype=)` feeds."""
    code = graph.dtype(name)
    return onnx.helper.tensor_dtype_to_np_dtype(code) if code else np.dtype(np.float32)


def check_sample_count(size: int, option: str) -> None:
    """InputError unless 1 <= `size` <= MAX_SAMPLES; `option` names it in the message (e.g. "--calib-size")."""
    if not 1 <= size <= MAX_SAMPLES:
        raise InputError(f"{option} {size:,} is outside 1..{MAX_SAMPLES:,} (the model runs once per sample; "
                         "ranges settle within a few hundred)")


def _check_shape(array: np.ndarray, input_shape: tuple[int, ...], where: str,
                 dtype: np.dtype | None = None) -> np.ndarray:
    """`array` (one sample or N) checked against the input shape, as `dtype` (module docstring); InputError if not."""
    expected = tuple(input_shape[1:])
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or tuple(array.shape[1:]) != expected:
        raise InputError(f"{where}: shape {list(array.shape)} does not fit the model input "
                         f"[N, {', '.join(map(str, expected))}]")
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{where}: dtype {array.dtype} is not numeric")
    dtype = np.dtype(np.float32) if dtype is None else dtype
    if np.issubdtype(dtype, np.integer):
        return _whole_numbers(array, dtype, where)
    with np.errstate(over="ignore", invalid="ignore"):   # counted below, not warned about
        values = array.astype(np.float32)
    bad = values.size - int(np.count_nonzero(np.isfinite(values)))
    if bad:   # NaN/Inf make every range NaN/Inf: scales of 1.0, NaN metrics (and numpy warnings)
        raise InputError(f"{where}: {bad:,} of {values.size:,} values are not finite (NaN or ±Inf, counted as "
                         "float32); calibration and evaluation data must be finite")
    return values if dtype == np.float32 else values.astype(dtype)


def _whole_numbers(array: np.ndarray, dtype: np.dtype, where: str) -> np.ndarray:
    """`array` as integer `dtype` when every value is a whole number in its range; else InputError (no rounding:
    a normalized float file is not pixels, and rounding it would calibrate on the wrong data)."""
    info = np.iinfo(dtype)
    with np.errstate(invalid="ignore"):
        bad = (array < info.min) | (array > info.max)
        if not np.issubdtype(array.dtype, np.integer):
            bad |= ~np.isfinite(array) | (np.floor(array) != array)
    if bad.any():
        raise InputError(f"{where}: the model input is {dtype}, so its data must be whole numbers in "
                         f"{info.min}..{info.max} (raw pixels, no normalization); {int(bad.sum()):,} of {array.size:,} "
                         f"values are not, e.g. {float(array[bad].ravel()[0]):g} ({array.dtype}): save the "
                         f"unnormalized pixels (e.g. as {dtype})")
    return array.astype(dtype)


def _read_samples(path: Path, input_shape: tuple[int, ...], count: int | None, key: str | None = None) -> np.ndarray:
    """Up to `count` samples from an .npy file or .npz member, header-checked (segcost.quant.arrays)."""
    shape, _ = header_shape(path, key)
    if len(shape) == len(input_shape) - 1:
        count = None  # one sample without a batch axis
    return read_npz(path, key, count) if key is not None else read_npy(path, count)


def _array_file(path: Path, input_name: str, input_shape: tuple[int, ...], size: int,
                dtype: np.dtype) -> CalibrationSource:
    labels = None
    if path.suffix.lower() == ".npz":
        keys = npz_keys(path)
        if not keys:
            raise InputError(f"{path}: empty .npz")
        key = input_name if input_name in keys else ("input" if "input" in keys else keys[0])
        data = _read_samples(path, input_shape, size, key)
        labels = read_npz(path, "labels", size) if "labels" in keys else None
    else:
        data = _read_samples(path, input_shape, size)
    batch = _check_shape(data, input_shape, str(path), dtype)
    if labels is not None and (labels.shape[0] != batch.shape[0] or labels.shape[-2:] != batch.shape[-2:]):
        raise InputError(f"{path}: labels {list(labels.shape)} do not match inputs {list(batch.shape)}")
    count = min(size, batch.shape[0])
    def load(index: int) -> Sample:
        return Sample({input_name: batch[index:index + 1]}, None if labels is None else labels[index])

    loaders: list[Callable[[], Sample]] = [partial(load, index) for index in range(count)]
    return CalibrationSource(input_name, input_shape, loaders, f"{count} samples from {path}")


def array_file_sample_shape(spec: str, input_name: str) -> tuple[int, ...] | None:
    """Shape of one sample (without the batch axis) of a .npy/.npz calibration file; None for other specs."""
    path = Path(spec)
    if path.suffix.lower() not in ARRAY_SUFFIXES or not path.is_file():
        return None
    key = None
    if path.suffix.lower() == ".npz":
        keys = npz_keys(path)
        key = input_name if input_name in keys else ("input" if "input" in keys else (keys[0] if keys else None))
    shape, _ = header_shape(path, key)
    return tuple(shape[1:]) if len(shape) == 4 else (tuple(shape) if len(shape) == 3 else None)


def _file_loader(path: Path, input_name: str, input_shape: tuple[int, ...], mean, std,
                 dtype: np.dtype) -> Callable[[], Sample]:
    def load() -> Sample:
        if path.suffix.lower() in ARRAY_SUFFIXES:
            keys = npz_keys(path) if path.suffix.lower() == ".npz" else []
            key = keys[0] if keys else None
            return Sample({input_name: _check_shape(_read_samples(path, input_shape, 1, key), input_shape,
                                                    str(path), dtype)})
        image = read_image(path)
        if np.issubdtype(dtype, np.integer):   # raw pixels: the graph normalizes
            return Sample({input_name: pixels_to_input(image, input_shape, dtype, path)})
        return Sample({input_name: image_to_input(image, input_shape, mean, std).astype(dtype)})

    return load


def _synthetic(input_name: str, input_shape: tuple[int, ...], size: int, seed: int, split: str,
               dtype: np.dtype) -> CalibrationSource:
    from segcost.data.synthetic import SyntheticShapes

    _, channels, height, width = input_shape
    integer = np.issubdtype(dtype, np.integer)
    if channels != 3 and integer:  # not an image model: seeded uniform integers in 0..255 (within the dtype)
        info = np.iinfo(dtype)
        low, high = max(info.min, 0), min(info.max, 255)

        def integers(index: int) -> Sample:
            rng = np.random.default_rng(seed + index)
            return Sample({input_name: rng.integers(low, high, input_shape, endpoint=True).astype(dtype)})

        return CalibrationSource(input_name, input_shape, [partial(integers, index) for index in range(size)],
                                 f"{size} uniform {dtype} tensors in {low}..{high}")
    if channels != 3:  # not an image model: seeded standard-normal tensors instead of shapes
        def noise(index: int) -> Sample:
            rng = np.random.default_rng(seed + index)
            return Sample({input_name: rng.standard_normal(input_shape).astype(np.float32).astype(dtype)})

        return CalibrationSource(input_name, input_shape, [partial(noise, index) for index in range(size)],
                                 f"{size} standard-normal tensors")
    if height < 16 or width < 16:
        raise InputError(f"synthetic calibration images need at least 16x16 pixels; the input is {height}x{width} "
                         "(give --calib with a folder or a .npy/.npz file)")
    dataset = SyntheticShapes(height=height, width=width, seed=seed)
    indices = list(dataset.split(split))[:size]

    def shapes(index: int) -> Sample:
        if integer:   # the raw pixels: an integer input normalizes inside the graph
            image, label = dataset.render(index)
            return Sample({input_name: pixels_to_input(image, input_shape, dtype, "synthetic")},
                          np.asarray(label, np.int64))
        image, label = dataset.sample(index)
        return Sample({input_name: np.asarray(image, np.float32)[None].astype(dtype)}, np.asarray(label))

    if integer and indices:
        shapes(indices[0])   # refuse an input that cannot hold 0..255 now, not halfway through calibration
    pixels = f", {dtype} pixels 0..255" if integer else ""
    return CalibrationSource(input_name, input_shape, [partial(shapes, index) for index in indices],
                             f"{len(indices)} synthetic shape images ({split} split{pixels})")
