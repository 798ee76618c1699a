"""Deterministic procedural shapes for semantic segmentation, with exact mIoU (numpy only).

Every sample is a pure function of (seed, index): the image is drawn from a NumPy
generator seeded with both numbers, so no data set is downloaded or stored and any
sample can be rebuilt anywhere. An image is a textured background (linear gradient,
stripes or smooth blotches between two colours, plus sensor noise) with 2–5 filled
shapes at random positions, sizes, angles and colours; the label is the class of the
topmost shape at each pixel, 0 where none is.

The shapes differ only in geometry, never in colour: a model has to look at outlines
(a ring's hole, a triangle's corners) rather than memorize palettes, which keeps the
task a real segmentation problem while staying learnable by a tiny network in minutes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

__all__ = ["CLASS_NAMES", "MEAN", "STD", "SyntheticShapes", "class_iou", "confusion_matrix", "miou",
           "miou_from_confusion", "normalize"]

CLASS_NAMES = ("background", "disc", "rectangle", "triangle", "ring", "cross")
# Per-channel normalization of sample(): (image - MEAN) / STD maps [0, 1] to [-2, 2].
MEAN = 0.5
STD = 0.25

SHAPES_PER_IMAGE = (2, 5)  # inclusive range
RADIUS_FRACTION = (0.1, 0.25)  # of min(height, width): 10–24 px at 96×96, 13–32 px at 128×128
NOISE_AMPLITUDE = (0.0, 0.1)  # half-width of the uniform pixel noise
MIN_CONTRAST_TO_BACKGROUND = 0.3  # RGB distance from the background's colour segment
MIN_CONTRAST_TO_SHAPES = 0.2  # RGB distance from earlier shapes, so touching shapes separate
COLOUR_TRIES = 20

# A shape drawer gets the generator, the row and column offsets from the shape's centre
# (broadcastable column and row vectors) and the radius of its bounding circle, and
# returns the boolean mask of its pixels.
ShapeDrawer = Callable[[np.random.Generator, np.ndarray, np.ndarray, float], np.ndarray]


def _rotated(rng: np.random.Generator, dy: np.ndarray, dx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets in a frame rotated by a random angle (the shape's own axes)."""
    angle = rng.uniform(0.0, math.pi)
    cos, sin = math.cos(angle), math.sin(angle)
    return dx * cos + dy * sin, dy * cos - dx * sin


def _disc(rng: np.random.Generator, dy: np.ndarray, dx: np.ndarray, radius: float) -> np.ndarray:
    return dy * dy + dx * dx <= radius * radius


def _rectangle(rng: np.random.Generator, dy: np.ndarray, dx: np.ndarray, radius: float) -> np.ndarray:
    # Half sides from the bounding radius; the aspect ratio stays within 1:2.5 so that a
    # rectangle never degenerates into a line that only the stripes background could explain.
    angle = rng.uniform(math.radians(22), math.radians(45))
    half_long, half_short = radius * math.cos(angle), radius * math.sin(angle)
    u, v = _rotated(rng, dy, dx)
    return (np.abs(u) <= half_long) & (np.abs(v) <= half_short)


def _triangle(rng: np.random.Generator, dy: np.ndarray, dx: np.ndarray, radius: float) -> np.ndarray:
    # Vertices on the bounding circle at jittered thirds of a turn; the jitter (< 1/6 turn)
    # keeps them counter-clockwise, so "inside" is "left of every edge".
    start = rng.uniform(0.0, 2 * math.pi)
    angles = start + 2 * math.pi * np.arange(3) / 3 + rng.uniform(-0.4, 0.4, size=3)
    ys, xs = radius * np.sin(angles), radius * np.cos(angles)
    inside = np.ones(np.broadcast_shapes(dy.shape, dx.shape), dtype=bool)
    for k in range(3):
        y0, x0, y1, x1 = ys[k], xs[k], ys[(k + 1) % 3], xs[(k + 1) % 3]
        inside &= (x1 - x0) * (dy - y0) - (y1 - y0) * (dx - x0) >= 0
    return inside


def _ring(rng: np.random.Generator, dy: np.ndarray, dx: np.ndarray, radius: float) -> np.ndarray:
    inner = radius * rng.uniform(0.45, 0.65)
    squared = dy * dy + dx * dx
    return (squared <= radius * radius) & (squared >= inner * inner)


def _cross(rng: np.random.Generator, dy: np.ndarray, dx: np.ndarray, radius: float) -> np.ndarray:
    half_width = radius * rng.uniform(0.22, 0.32)
    u, v = _rotated(rng, dy, dx)
    u, v = np.abs(u), np.abs(v)
    arm = radius * 0.95  # the arm's corner stays inside the bounding circle
    return ((u <= arm) & (v <= half_width)) | ((v <= arm) & (u <= half_width))


SHAPE_DRAWERS: tuple[ShapeDrawer, ...] = (_disc, _rectangle, _triangle, _ring, _cross)  # classes 1, 2, …


def _distance_to_segment(point: np.ndarray, start: np.ndarray, end: np.ndarray) -> float:
    """Euclidean distance from `point` to the segment start–end (all RGB vectors)."""
    direction = end - start
    length_squared = float(direction @ direction)
    t = 0.0 if length_squared == 0 else min(1.0, max(0.0, float((point - start) @ direction) / length_squared))
    return float(np.linalg.norm(point - (start + t * direction)))


def _contrasting_colour(rng: np.random.Generator, background: tuple[np.ndarray, np.ndarray],
                        shape_colours: list[np.ndarray]) -> np.ndarray:
    """A random colour far from the background's colours and from earlier shapes.

    Rejection sampling with a fixed number of tries keeps the result deterministic; if no
    try clears both margins, the try with the largest worst-case margin wins.
    """
    best, best_margin = None, -math.inf
    for _ in range(COLOUR_TRIES):
        colour = rng.random(3, dtype=np.float32)
        margin = _distance_to_segment(colour, *background) - MIN_CONTRAST_TO_BACKGROUND
        for other in shape_colours:
            margin = min(margin, float(np.linalg.norm(colour - other)) - MIN_CONTRAST_TO_SHAPES)
        if margin >= 0:
            return colour
        if margin > best_margin:
            best, best_margin = colour, margin
    assert best is not None, "COLOUR_TRIES >= 1 and every finite margin beats -inf"
    return best


def normalize(image: np.ndarray) -> np.ndarray:
    """HWC image in [0, 1] → CHW float32 network input, (image - MEAN) / STD."""
    return np.ascontiguousarray(((image - MEAN) / STD).transpose(2, 0, 1), dtype=np.float32)


class SyntheticShapes:
    """A procedural segmentation data set: index → (image, label), deterministic per seed.

    Images from `render` are float32 HWC in [0, 1]; `sample` and `batch` return the
    normalized float32 CHW network input (see `normalize`) and int64 labels ready for
    a cross-entropy loss. Indices are split as val = [0, val_size), test = the next
    test_size, train = the next train_size, so growing the training set never moves the
    evaluation samples.

    Args:
        num_classes: background plus the first num_classes - 1 shapes of
            CLASS_NAMES[1:] ("disc", "rectangle", "triangle", "ring", "cross"); 2 to 6.
        height: image height in pixels, at least 16.
        width: image width in pixels, at least 16.
        seed: data set seed; together with the index it fixes a sample.
        train_size: number of training indices.
        val_size: number of validation indices.
        test_size: number of test indices.

    Raises:
        ValueError: for an unsupported class count, image size, seed or split size.
    """

    def __init__(self, num_classes: int = 5, height: int = 128, width: int = 128, seed: int = 0, *,
                 train_size: int = 100_000, val_size: int = 500, test_size: int = 500):
        if not 2 <= num_classes <= len(CLASS_NAMES):
            raise ValueError(f"num_classes must be 2..{len(CLASS_NAMES)}, got {num_classes}")
        if height < 16 or width < 16:
            raise ValueError(f"images must be at least 16×16, got {height}×{width}")
        if seed < 0 or min(train_size, val_size, test_size) < 0:
            raise ValueError("seed and split sizes must be non-negative")
        self.num_classes = num_classes
        self.height = height
        self.width = width
        self.seed = seed
        self._splits = {"val": range(0, val_size),
                        "test": range(val_size, val_size + test_size),
                        "train": range(val_size + test_size, val_size + test_size + train_size)}
        # Pixel-centre coordinates, shaped to broadcast into (rows, cols) grids.
        self._rows = np.arange(height, dtype=np.float32)[:, None]
        self._cols = np.arange(width, dtype=np.float32)[None, :]

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the classes in label order, "background" first."""
        return CLASS_NAMES[:self.num_classes]

    def split(self, name: str) -> range:
        """The indices of split "train", "val" or "test"; the three never overlap."""
        if name not in self._splits:
            raise ValueError(f"unknown split {name!r} (train, val or test)")
        return self._splits[name]

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw sample: image float32 (H, W, 3) in [0, 1] and label uint8 (H, W).

        The image is a channels-last view of a channels-first array (the layout that
        the drawing code is fast in); call np.ascontiguousarray on it where that matters.
        """
        image, label = self._render_channels_first(index)
        return image.transpose(1, 2, 0), label

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Network-ready sample: image float32 (3, H, W) normalized, label int64 (H, W)."""
        image, label = self._render_channels_first(index)
        image -= MEAN
        image /= STD
        return image, label.astype(np.int64)

    def batch(self, indices: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """Stacked samples: images float32 (N, 3, H, W) and labels int64 (N, H, W)."""
        samples = [self.sample(index) for index in indices]
        if not samples:
            raise ValueError("a batch needs at least one index")
        images, labels = zip(*samples)
        return np.stack(images), np.stack(labels)

    def _render_channels_first(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index < 0:
            raise ValueError(f"index must be non-negative, got {index}")
        rng = np.random.default_rng([self.seed, index])
        image, background = self._background(rng)
        label = np.zeros((self.height, self.width), dtype=np.uint8)
        self._draw_shapes(rng, image, label, background)
        # Zero-mean uniform "sensor" noise, shared by the channels: per-channel Gaussian
        # noise would cost more than all the drawing (about 1 ms against 0.07 ms at
        # 128×128) and hides flat-colour shortcuts no better.
        noise_amplitude = rng.uniform(*NOISE_AMPLITUDE)
        noise = rng.random((self.height, self.width), dtype=np.float32)
        noise -= 0.5
        noise *= 2 * noise_amplitude
        image += noise
        np.clip(image, 0.0, 1.0, out=image)
        return image, label

    def _background(self, rng: np.random.Generator) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """A (3, H, W) textured background blending two random colours, and the colours."""
        start, end = rng.random(3, dtype=np.float32), rng.random(3, dtype=np.float32)
        kind = rng.integers(3)
        if kind == 0:  # linear gradient in a random direction
            angle = rng.uniform(0.0, 2 * math.pi)
            along = self._cols * math.cos(angle) + self._rows * math.sin(angle)
            blend = (along - along.min()) / max(float(np.ptp(along)), 1.0)
        elif kind == 1:  # sinusoidal stripes of random period, angle and phase
            angle = rng.uniform(0.0, math.pi)
            period = rng.uniform(6.0, 24.0)
            along = self._cols * math.cos(angle) + self._rows * math.sin(angle)
            blend = 0.5 + 0.5 * np.sin(along * (2 * math.pi / period) + rng.uniform(0.0, 2 * math.pi))
        else:  # smooth blotches: a coarse random grid, bilinearly upsampled
            blend = self._blotches(rng)
        image = start[:, None, None] + blend.astype(np.float32) * (end - start)[:, None, None]
        return image, (start, end)

    def _blotches(self, rng: np.random.Generator) -> np.ndarray:
        grid_rows, grid_cols = rng.integers(3, 9, size=2)
        grid = rng.random((grid_rows, grid_cols), dtype=np.float32)

        def positions(count: int, grid_count: int) -> tuple[np.ndarray, np.ndarray]:
            where = np.linspace(0.0, grid_count - 1, count, dtype=np.float32)
            low = np.minimum(where.astype(np.int64), grid_count - 2)
            return low, where - low

        row_low, row_frac = positions(self.height, grid_rows)
        col_low, col_frac = positions(self.width, grid_cols)
        rows = grid[row_low] * (1 - row_frac[:, None]) + grid[row_low + 1] * row_frac[:, None]
        return rows[:, col_low] * (1 - col_frac) + rows[:, col_low + 1] * col_frac

    def _draw_shapes(self, rng: np.random.Generator, image: np.ndarray, label: np.ndarray,
                     background: tuple[np.ndarray, np.ndarray]) -> None:
        """Paint 2–5 shapes into `image` and their classes into `label`, in place."""
        foreground = np.arange(1, self.num_classes)
        count = int(rng.integers(SHAPES_PER_IMAGE[0], SHAPES_PER_IMAGE[1] + 1))
        # Cycle through a shuffled class list: an image repeats a class only when it has
        # more shapes than classes, which balances the classes within every image.
        classes = np.resize(rng.permutation(foreground), count)
        shortest_side = min(self.height, self.width)
        colours: list[np.ndarray] = []
        for class_id in classes:
            radius = shortest_side * rng.uniform(*RADIUS_FRACTION)
            # Centres keep at least half the radius inside, so shapes are at most half clipped.
            centre_row = rng.uniform(radius / 2, self.height - radius / 2)
            centre_col = rng.uniform(radius / 2, self.width - radius / 2)
            top, bottom = max(0, int(centre_row - radius)), min(self.height, int(centre_row + radius) + 2)
            left, right = max(0, int(centre_col - radius)), min(self.width, int(centre_col + radius) + 2)
            dy = self._rows[top:bottom] - centre_row
            dx = self._cols[:, left:right] - centre_col
            mask = SHAPE_DRAWERS[class_id - 1](rng, dy, dx, radius)
            colour = _contrasting_colour(rng, background, colours)
            colours.append(colour)
            # A gentle shading across the shape, so "flat colour" alone does not identify it.
            shade_angle = rng.uniform(0.0, 2 * math.pi)
            shade = 0.1 / radius * (dx * math.cos(shade_angle) + dy * math.sin(shade_angle))
            fill = colour[:, None, None] + shade
            np.copyto(image[:, top:bottom, left:right], fill, where=mask)
            label[top:bottom, left:right][mask] = class_id


def confusion_matrix(pred: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixel counts int64 (num_classes, num_classes): row = true class, column = predicted.

    Raises:
        ValueError: if the shapes differ or a value is outside [0, num_classes).
    """
    pred, label = np.asarray(pred), np.asarray(label)
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from label shape {label.shape}")
    for name, values in (("prediction", pred), ("label", label)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} values must be in [0, {num_classes}), got {values.min()}..{values.max()}")
    pairs = label.ravel().astype(np.int64) * num_classes + pred.ravel().astype(np.int64)
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def class_iou(confusion: np.ndarray) -> np.ndarray:
    """Per-class IoU (float64) from a confusion matrix; NaN for a class in neither input."""
    confusion = np.asarray(confusion, dtype=np.int64)
    true_positive = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    iou = np.full(len(confusion), np.nan)
    present = union > 0
    iou[present] = true_positive[present] / union[present]
    return iou


def miou_from_confusion(confusion: np.ndarray) -> float:
    """Mean IoU over the classes present in the labels or the predictions.

    Accumulating one confusion matrix over a whole split and calling this gives the
    usual data-set mIoU (not a mean of per-image scores).

    Raises:
        ValueError: if the matrix counts no pixels.
    """
    iou = class_iou(confusion)
    if np.isnan(iou).all():
        raise ValueError("mIoU of zero pixels is undefined")
    return float(np.nanmean(iou))


def miou(pred: np.ndarray, label: np.ndarray, num_classes: int) -> float:
    """Exact mean IoU of integer `pred` against `label` over classes present in either."""
    return miou_from_confusion(confusion_matrix(pred, label, num_classes))
