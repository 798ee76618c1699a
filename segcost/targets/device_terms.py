"""Small cost terms of a deployed accelerator that whole-model device times show (TI golden references).

* `matrix_fill` — how much of the matrix unit's `width`×`width` tiles a conv's MACs use.
  A dense conv with K input and N output channels (per group) fills fill(K)·fill(N) of its
  tiles, fill(x) = x / (⌈x/width⌉·width). A grouped conv run group by group pays one whole
  tile per group ("per_group", onnxruntime's CPU kernels): fill(K)·fill(N) with K, N the
  group's channels, so RegNetX's 16-wide groups on a 64-wide MMA use (16/64)². Packed
  block-diagonally ("block_diagonal", TIDL's grouped convs), ⌊width/max(K, N)⌋ groups share
  one tile, their weights on its diagonal: fill = k·K·N / (⌈K'/width⌉·⌈N'/width⌉·width²)
  with K' = k·K, N' = k·N — 16-wide groups then use 4·16·16/64² = 1/4 of each tile;
* `host_io_bytes` — graph inputs and outputs cross between the host's float buffers and the
  accelerator's int8 tensors: every element is read in one format and written in the other
  (quantization of the image, dequantization of the outputs: full-resolution logits cost
  what their size says, an ArgMax at the end shrinks them C-fold);
* `handover_ms` — a tensor handed between the accelerator and the fallback core is read in
  one format and written in the other through DDR, plus one synchronisation.
"""

from __future__ import annotations

from math import ceil

__all__ = ["GROUPED_TILINGS", "handover_ms", "host_io_bytes", "matrix_fill", "tile_fill"]

GROUPED_TILINGS = ("per_group", "block_diagonal")


def tile_fill(size: int, width: int) -> float:
    """Fraction of `width`-wide tiles that `size` occupies (1.0 for an unknown size)."""
    return 1.0 if size <= 0 else size / (ceil(size / width) * width)


def matrix_fill(reduce_dim: int, out_dim: int, width: int, groups: int = 1, tiling: str = "per_group") -> float:
    """Useful fraction of the `width`-wide tiles for `groups` groups of `reduce_dim`→`out_dim` channels (see module)."""
    if groups <= 1 or tiling == "per_group" or reduce_dim <= 0 or out_dim <= 0 or max(reduce_dim, out_dim) >= width:
        return tile_fill(reduce_dim, width) * tile_fill(out_dim, width)
    packed = min(groups, width // max(reduce_dim, out_dim))
    rows, cols = packed * reduce_dim, packed * out_dim
    return packed * reduce_dim * out_dim / (ceil(rows / width) * ceil(cols / width) * width * width)


def host_io_bytes(elements: int, device_bytes: int, host_bytes: int) -> int:
    """Bytes moved to hand `elements` values between host buffers and the accelerator.

    One format is read and the other written.
    """
    return elements * (device_bytes + host_bytes)


def handover_ms(elements: int, source_bytes: int, destination_bytes: int, gbytes_per_s: float,
                overhead_us: float) -> float:
    """ms to hand `elements` values between devices: elements·(source + destination bytes) / bandwidth + overhead."""
    return elements * (source_bytes + destination_bytes) / (gbytes_per_s * 1e6) + overhead_us / 1000
