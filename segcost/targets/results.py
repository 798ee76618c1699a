"""Result objects of the target cost model (segcost.targets.cost_model); reports render them."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LayerEstimate", "TargetReport", "Totals", "TransferEstimate", "priced_layer"]


def priced_layer(name: str, layers: Container[str]) -> str | None:
    """The analysis layer an estimate row named `name` prices: the layer of that name, or — for a row the
    target's import made (segcost.targets.imported_layers: "<first node> (<pattern>, N nodes)" for a fused
    sequence, "<name> (scale, eltwise)" / "<name> (bias, eltwise)" for a LayerNormalization's γ and β) — the
    layer its name starts with. None when neither is in `layers` (a layer name is matched exactly first, so a
    layer whose own name ends in " (...)" is never cut)."""
    if name in layers:
        return name
    base, separator, rest = name.rpartition(" (")
    return base if separator and rest.endswith(")") and base in layers else None


@dataclass
class LayerEstimate:
    """Cost of one IR layer on the target.

    Attributes:
        name, op_type, kind: as in the analysis (kind: dense/pointwise/grouped/depthwise/other).
        placement: "accelerator" or the fallback device's name ("arm").
        cycles: total cycles, in the clock of the device in `placement`.
        ms: cycles converted to milliseconds.
        bound: "compute", "memory" or "overhead" — the largest of the three terms.
        utilisation_pct: achieved share of the device's peak: MACs for MAC layers, elementwise
            flops for the others (0 for layers that do neither, e.g. Concat).
        reason: why the layer costs what it costs, in one sentence.
        macs, compute_cycles, memory_cycles, overhead_cycles, traffic_bytes, memory_level:
            the terms behind `cycles`.
    """

    name: str
    op_type: str
    kind: str
    placement: str
    cycles: float
    ms: float
    bound: str
    utilisation_pct: float
    reason: str
    macs: int = 0
    compute_cycles: float = 0.0
    memory_cycles: float = 0.0
    overhead_cycles: float = 0.0
    traffic_bytes: int = 0
    memory_level: str = ""


@dataclass
class TransferEstimate:
    """One tensor handed between the accelerator and the fallback core, or converted between the runtime's
    layouts (direction "blocked->plain" / "plain->blocked", segcost.targets.runtime)."""

    tensor: str
    producer: str
    consumer: str          # the first consumer on the other side
    direction: str         # e.g. "accelerator->arm"
    bytes: int
    ms: float


@dataclass
class Totals:
    """Whole-model figures.

    `share_by_kind` maps a layer kind (dense/pointwise/grouped/depthwise/other, plus
    "transfer" and "run") to its share of latency; `share_by_op_type` does the same per op
    type; `ms_by_bound` sums layer time by what bounds it.
    """

    latency_ms: float
    fps: float
    macs: int
    utilisation_pct: float
    accelerator_ms: float
    fallback_ms: float
    transfer_ms: float
    run_overhead_ms: float
    fallback_layers: int
    share_by_kind: dict[str, float] = field(default_factory=dict)
    share_by_op_type: dict[str, float] = field(default_factory=dict)
    ms_by_bound: dict[str, float] = field(default_factory=dict)


@dataclass
class TargetReport:
    """The estimate of a model on one profile; reports render it, nothing here is recomputed."""

    profile_name: str
    profile_description: str
    dtype: str
    peak_macs_per_s: float
    bandwidth_bytes_per_s: float
    layers: list[LayerEstimate]
    transfers: list[TransferEstimate]
    totals: Totals

    def slowest(self, count: int) -> list[LayerEstimate]:
        """The `count` layers that dominate latency, slowest first (ties by name)."""
        return sorted(self.layers, key=lambda layer: (-layer.ms, layer.name))[:count]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "segcost.target/1", "profile": self.profile_name, "description": self.profile_description,
                "dtype": self.dtype, "peak_macs_per_s": self.peak_macs_per_s,
                "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s, "totals": dict(vars(self.totals)),
                "layers": [dict(vars(layer)) for layer in self.layers],
                "transfers": [dict(vars(transfer)) for transfer in self.transfers]}
