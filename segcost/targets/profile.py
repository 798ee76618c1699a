"""Target profiles: the numbers the cost model uses, loaded from TOML data files.

A profile describes one execution device ("accelerator": the MMA of a TDA4VM, or the CPU
cores onnxruntime uses) plus, optionally, the ARM core that runs what the accelerator
cannot. Built-in profiles live in ``segcost/targets/profiles/NAME.toml``; a user passes
``--target NAME`` or ``--target path/to/profile.toml``. Every value is validated here so
that the cost model can trust it; a bad file is one `InputError` naming the file, the
key and what is wrong (segcost.targets.profile_toml reads and writes the files).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["DTYPE_BYTES", "FallbackDevice", "MemoryLevel", "TargetProfile"]

# Bytes per element of the data types a profile may name.
DTYPE_BYTES = {"int8": 1, "uint8": 1, "int16": 2, "float16": 2, "bfloat16": 2, "float32": 4}
# Layer kinds of the analyzer (LayerCost.kind) that carry MACs; each needs an efficiency.
MAC_KINDS = ("dense", "pointwise", "grouped", "depthwise")
# ConvTranspose runs through different kernels than Conv on most runtimes; its efficiency is
# optional and defaults to the dense one.
TRANSPOSED = "transposed"


@dataclass(frozen=True)
class MemoryLevel:
    """One level of the memory hierarchy.

    Attributes:
        name: e.g. "L2", "MSMC", "DDR".
        capacity_bytes: a layer whose working set fits here streams at this level's
            bandwidth; None for the last level (external memory), which holds anything.
        bytes_per_cycle: sustained bandwidth in bytes per accelerator cycle.
    """

    name: str
    capacity_bytes: int | None
    bytes_per_cycle: float


@dataclass(frozen=True)
class FallbackDevice:
    """The general-purpose core that runs layers the accelerator does not support.

    Attributes:
        name: e.g. "arm" (shown as the layer's placement).
        clock_ghz: core clock.
        macs_per_cycle: peak MACs per cycle in `dtype` (all cores the runtime uses).
        efficiency: achieved fraction of that peak for MAC layers.
        flops_per_cycle: elementwise operations per cycle (non-MAC layers).
        bytes_per_cycle: memory bandwidth in bytes per core cycle.
        dtype: data type the fallback runs in (float32 on ARM: the runtime dequantizes).
        layer_overhead_cycles: fixed cost per layer (dispatch, set-up).
        transfer_gbytes_per_s: bandwidth of a hand-over between accelerator and core (DDR).
        transfer_overhead_us: fixed cost per hand-over (synchronisation, cache maintenance).
    """

    name: str
    clock_ghz: float
    macs_per_cycle: float
    efficiency: float
    flops_per_cycle: float
    bytes_per_cycle: float
    dtype: str
    layer_overhead_cycles: float
    transfer_gbytes_per_s: float
    transfer_overhead_us: float


@dataclass(frozen=True)
class TargetProfile:
    """Everything the cost model knows about a target (see profiles/*.toml for the sources).

    Attributes:
        name: profile name ("tda4vm").
        description: one line for reports.
        clock_ghz: accelerator clock.
        macs_per_cycle: peak MACs per cycle of the matrix unit in `dtype`.
        dtype: data type of activations and weights on the accelerator.
        align_width: the matrix unit's tile width; channel counts are padded up to it.
        unaligned_efficiency: extra efficiency factor of convs whose channels are not whole
            tiles (1: only the padding is lost; below 1: the runtime leaves its fast path, as
            onnxruntime does when channels are not multiples of its NCHWc block).
        unaligned_depthwise_efficiency: the same for depthwise convs, whose fast kernels need
            whole channel blocks even more (onnxruntime runs an unaligned depthwise conv as a
            grouped im2col GEMM, measured 3-4x slower per MAC); None: unaligned_efficiency.
        unaligned_vector_efficiency: the same for the vector rate of rank-4 non-MAC layers
            (Resize, pooling ...) whose channel count is not a multiple of align_width.
        efficiency: achieved fraction of peak per MAC layer kind, before alignment losses.
        vector_flops_per_cycle: non-MAC elementwise operations per cycle.
        grouped_row_overhead_pixels: per output row, a grouped conv pays the time of this many
            more output pixels (onnxruntime runs its NCHWc kernel per group and row; measured:
            RegNetX's group convs on 12-pixel-wide maps run at 2/3 of their speed on 64-wide
            ones): efficiency × W / (W + grouped_row_overhead_pixels) for output width W.
        grouped_tiling: how grouped convs use the matrix unit's tiles: "per_group" (a tile per
            group) or "block_diagonal" (groups packed on a tile's diagonal; device_terms.matrix_fill).
        taps_in_reduction: the matrix unit reduces over C_in/group · kernel taps at once (an
            im2col-style K), so a 3-channel 3×3 stem fills 27 of a tile's rows, not 3; False: taps
            are accumulated one after another (onnxruntime's CPU kernels).
        host_io_bytes_per_cycle: bandwidth of handing graph inputs/outputs between the host's
            `host_dtype` buffers and the accelerator (quantize/dequantize + copy); 0: not modelled.
        host_dtype: data type of the host's input/output buffers.
        memory_overlap: how much of the shorter of a layer's compute and memory time hides
            under the longer one (1: a pure roofline, max(compute, memory); 0: they add up).
        memory: memory levels, innermost first; the last one has no capacity limit.
        layer_overhead_cycles: fixed cost of every executed layer.
        run_overhead_us: fixed cost of one inference (runtime entry/exit).
        fused_activations_free: activations fused into a conv cost nothing.
        blocked_layout: the runtime keeps activations in blocks of align_width channels
            (onnxruntime's NCHWc); which layers stay on that path: segcost.targets.runtime.
        path_channel_multiple: the channel multiple a conv needs to stay on the blocked path
            (None: align_width).
        skips_padding_taps: the conv kernels skip kernel taps that fall in the padding, so a
            conv costs its valid taps only (segcost.targets.runtime.valid_tap_fraction).
        fused_into_conv_ops: op types the runtime itself folds into the convolution producing
            their input, when that conv output has no other consumer (onnxruntime folds
            HardSwish, Sigmoid, a residual Add ... into its NCHWc convs): they cost nothing.
        supported_ops: op types (default domain) the accelerator runs; None means all.
        free_ops: op types that only relabel a tensor (Reshape ...): zero cycles.
        rules: verifier rule set (tidl-rules.toml) whose target findings force fallback.
        fallback: the device that runs the rest; None when everything runs on the accelerator.
        source: where the profile was read from.
    """

    name: str
    description: str
    clock_ghz: float
    macs_per_cycle: float
    dtype: str
    align_width: int
    efficiency: dict[str, float]
    vector_flops_per_cycle: float
    memory: tuple[MemoryLevel, ...]
    layer_overhead_cycles: float
    run_overhead_us: float = 0.0
    unaligned_efficiency: float = 1.0
    unaligned_vector_efficiency: float = 1.0
    unaligned_depthwise_efficiency: float | None = None
    memory_overlap: float = 1.0
    grouped_row_overhead_pixels: float = 0.0
    grouped_tiling: str = "per_group"
    taps_in_reduction: bool = False
    host_io_bytes_per_cycle: float = 0.0
    host_dtype: str = "float32"
    fused_activations_free: bool = True
    fused_into_conv_ops: frozenset[str] = frozenset()
    blocked_layout: bool = False
    path_channel_multiple: int | None = None
    skips_padding_taps: bool = False
    supported_ops: frozenset[str] | None = None
    free_ops: frozenset[str] = frozenset()
    rules: str | None = None
    fallback: FallbackDevice | None = None
    source: str = field(default="", compare=False)

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def peak_macs_per_s(self) -> float:
        return self.macs_per_cycle * self.clock_ghz * 1e9

    @property
    def external_bytes_per_s(self) -> float:
        """Bandwidth of the last (external) memory level, for rooflines."""
        return self.memory[-1].bytes_per_cycle * self.clock_ghz * 1e9

    def with_values(self, **changes: Any) -> TargetProfile:
        return replace(self, **changes)
