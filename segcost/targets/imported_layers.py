"""The layers a target's importer makes of an op sequence: one matched fused pattern, one layer.

TI's import turns each sequence of a rule set's `fused_patterns` (segcost.passes.target_patterns) into
ONE layer: ReduceMean-Sub-Pow-ReduceMean-Add-Sqrt-Div into TIDL_LayerNormLayer (edgeai-tidl-tools
docs/tidl_fsg_vtfr.md @ 95ba2c7e, "Layernorm": "The following sequence of ONNX operators are converted
to a layernorm layer in TIDL"; supported_ops_rts_versions.md SDK 11.00 fused row 1) and GELU's erf form
into a batchnorm layer (same document, "GELU": "... are mapped to TIDL's Batchnorm layer"). The cost
model prices each group as that one layer:

* work = the sum of its nodes' MACs and flops (the counts stay exact and the totals unchanged);
* inputs = the activations it reads from outside the group (each once), outputs = the tensors it
  produces that a node outside the group or the model's outputs read: its internal tensors never
  reach memory;
* one per-layer overhead (it is one kernel).

The γ Mul and β Add after the sequence are not part of it: "The γ (Multiplication factor) and β
(Addition Factor) are expressed outside TIDL's layernorm block as eltwise layers" (tidl_fsg_vtfr.md),
so they stay two layers of their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from segcost.analyzer.result import LayerCost
from segcost.passes.target_patterns import FusedGroup

__all__ = ["PATTERN_OPS", "group_name", "merge_groups"]

# The op each pattern stands for (its ONNX op; LayerNormalization is what opset 17 exports the sequence as).
PATTERN_OPS = {"layernorm-width": "LayerNormalization", "gelu-erf": "Gelu"}


def group_name(group: FusedGroup) -> str:
    """The layer's name: its first node's, the pattern and how many nodes: "mean (layernorm-width, 7 nodes)"."""
    return f"{group.keys[0]} ({group.pattern}, {len(group.keys)} nodes)"


def merge_groups(layers: Sequence[LayerCost], groups: Iterable[FusedGroup], model_outputs: frozenset[str],
                 skip: frozenset[str] = frozenset()) -> list[LayerCost]:
    """`layers` (analysis order) with each group's layers replaced by one LayerCost, where its last node was.

    A group with a layer in `skip` (e.g. fused into a conv by the pipeline) or a layer the analysis does not
    list is left as it is. The merged layer's `inputs`/`input_shapes` are the group's external inputs (graph
    inputs, other layers' outputs and constants, each once), `outputs` the tensors read outside it; macs,
    flops, bias_flops, flops_by_category, params and weight_bytes are the sums; `activation_bytes` is that
    of the layers whose outputs leave the group; output_shape is the last node's (its outputs come first).
    """
    by_name = {layer.name: layer for layer in layers}
    readers: dict[str, set[str]] = {}
    for layer in layers:
        for tensor in layer.inputs:
            readers.setdefault(tensor, set()).add(layer.name)
    merged: dict[str, LayerCost] = {}     # last member → the group's layer
    members: set[str] = set()
    for group in groups:
        if not group.keys or any(key not in by_name or key in skip for key in group.keys):
            continue
        merged[group.keys[-1]] = _merge(group, [by_name[key] for key in group.keys], readers, model_outputs)
        members.update(group.keys)
    return [merged.get(layer.name, layer) for layer in layers
            if layer.name not in members or layer.name in merged]


def _merge(group: FusedGroup, parts: list[LayerCost], readers: dict[str, set[str]],
           model_outputs: frozenset[str]) -> LayerCost:
    inside = set(group.keys)
    produced = {tensor for part in parts for tensor in part.outputs if tensor}
    inputs: dict[str, list[int | str | None] | None] = {}
    for part in parts:
        for tensor, shape in zip(part.inputs, part.input_shapes):
            if tensor and tensor not in produced:
                inputs.setdefault(tensor, shape)
    leaving = [part for part in reversed(parts) if any(tensor in model_outputs or readers.get(tensor, set()) - inside
                                             for tensor in part.outputs if tensor)]
    outputs = [tensor for part in leaving for tensor in part.outputs
               if tensor and (tensor in model_outputs or readers.get(tensor, set()) - inside)]
    categories: dict[str, int] = {}
    for part in parts:
        for category, flops in part.flops_by_category.items():
            categories[category] = categories.get(category, 0) + flops
    last = parts[-1]
    return replace(
        last, name=group_name(group), op_type=PATTERN_OPS.get(group.pattern, group.pattern), group=None, kernel=None,
        stride=None, inputs=list(inputs), input_shapes=list(inputs.values()), outputs=outputs,
        macs=sum(part.macs for part in parts), flops=sum(part.flops for part in parts),
        bias_flops=sum(part.bias_flops for part in parts), flops_by_category=categories,
        params=sum(part.params for part in parts), weight_bytes=sum(part.weight_bytes for part in parts),
        activation_bytes=sum(part.activation_bytes for part in leaving),
        status=next((part.status for part in parts if part.status != "ok"), "ok"))
