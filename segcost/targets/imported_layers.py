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
so they stay two layers of their own. The single LayerNormalization op (opset 17) is imported as the
same layers (`split_affine`): TIDL's layernorm block has no γ/β, and TI's own
tidl_onnx_model_optimizer expanded the op into exactly that sequence plus a Mul by the scale and an Add
of the bias (osrt_model_tools/onnx_tools/tidl_onnx_model_optimizer/src/layernorm.py @ 95ba2c7e,
`expand_layernorm_to_component_ops`, off by default since "Added support in import" in ops.py), so
both export forms of one network cost the same layers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from math import prod

from segcost.analyzer.result import AnalysisResult, LayerCost
from segcost.ir import Graph
from segcost.passes.target_patterns import FusedGroup, fused_groups
from segcost.passes.verify_conv import load_rules

__all__ = ["PATTERN_OPS", "group_name", "imported_layers", "merge_groups", "split_affine"]

# The op each pattern stands for (its ONNX op; LayerNormalization is what opset 17 exports the sequence as).
PATTERN_OPS = {"layernorm-width": "LayerNormalization", "gelu-erf": "Gelu"}


def imported_layers(analysis: AnalysisResult, graph: Graph | None, rules: str | None, fused: dict[str, str],
                    blocked: frozenset[str]) -> Sequence[LayerCost]:
    """The layers of `analysis` as rule set `rules`' importer makes them: each LayerNormalization not in `blocked`
    (placed on the fallback core) split (`split_affine`), each of its `fused_patterns` matched in `graph` one layer
    (`merge_groups`; a group with a node in `fused`, the pipeline's activation → conv marks, either side, is left).
    Without a graph or a rule set (cpu: onnxruntime runs the nodes it is given), `analysis.layers` as they are.

    Raises:
        InputError: an unknown rule set, or a ReduceMean axis out of range for its input.
    """
    if graph is None or rules is None:
        return analysis.layers
    return merge_groups(split_affine(analysis.layers, blocked), fused_groups(graph, load_rules(rules).fused_patterns),
                        frozenset(tensor.name for tensor in analysis.model.outputs),
                        skip=frozenset(fused) | frozenset(fused.values()))


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


def split_affine(layers: Sequence[LayerCost], skip: frozenset[str] = frozenset()) -> list[LayerCost]:
    """`layers` with each LayerNormalization (not in `skip`: e.g. placed on the fallback core) as the layers TI
    imports it as: the normalization, "<name> (scale, eltwise)" Mul by γ and, with a bias input, "<name> (bias,
    eltwise)" Add of β (see the module docstring). Each of the two takes one flop per element and its vector's
    params from the op (analyzer rule layer_normalization: 5·E + 4·R for the statistics, +E for γ, +E for β);
    the sums stay the op's. A layer whose input shape is not static is left whole.
    """
    result: list[LayerCost] = []
    for layer in layers:
        shape = layer.input_shapes[0] if layer.input_shapes else None
        if layer.op_type != "LayerNormalization" or layer.domain or layer.name in skip or len(layer.inputs) < 2 \
                or shape is None or not all(isinstance(dim, int) for dim in shape) or not layer.outputs:
            result.append(layer)
            continue
        elements = prod(dim for dim in shape if isinstance(dim, int))
        vectors = [(role, op_type, tensor, layer.input_shapes[index] if index < len(layer.input_shapes) else None)
                   for index, (role, op_type) in ((1, ("scale", "Mul")), (2, ("bias", "Add")))
                   if index < len(layer.inputs) and layer.inputs[index]
                   for tensor in [layer.inputs[index]]]
        parts = []
        previous = layer.inputs[0]
        for number, (role, op_type, tensor, vector_shape) in enumerate(vectors):
            output = layer.outputs[0] if number == len(vectors) - 1 else f"{layer.name}/{role}d"
            params = prod(dim for dim in vector_shape or () if isinstance(dim, int)) if vector_shape else 0
            parts.append(replace(layer, name=f"{layer.name} ({role}, eltwise)", op_type=op_type, kind="other",
                                 inputs=[previous, tensor], input_shapes=[list(shape), vector_shape],
                                 outputs=[output], flops=elements, bias_flops=0,
                                 flops_by_category=_category_part(layer, elements), params=params,
                                 weight_bytes=layer.weight_bytes * params // max(1, layer.params)))
            previous = output
        normalized = f"{layer.name}/normalized"
        parts[0] = replace(parts[0], inputs=[normalized, parts[0].inputs[1]])
        taken = len(parts) * elements
        norm = replace(layer, outputs=[normalized], inputs=[layer.inputs[0]], input_shapes=[list(shape)],
                       flops=layer.flops - taken, flops_by_category=_category_part(layer, layer.flops - taken),
                       params=layer.params - sum(part.params for part in parts),
                       weight_bytes=layer.weight_bytes - sum(part.weight_bytes for part in parts))
        result += [norm, *parts]
    return result


def _category_part(layer: LayerCost, flops: int) -> dict[str, int]:
    """`flops` in the category of the op (a LayerNormalization's flops are all in one)."""
    category = next(iter(layer.flops_by_category), None)
    return {category: flops} if category is not None and flops else {}
