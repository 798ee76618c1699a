"""Fold an inference-mode BatchNormalization into the Conv/ConvTranspose before it.

BN computes y = γ·(x − μ)/√(σ² + ε) + β per channel. With s = γ/√(σ² + ε) this is
y = s·x + (β − s·μ), so for x = W∗u + b:

    W′ = s·W   (per output channel)       b′ = s·(b − μ) + β

Conv weights are [C_out, C_in/g, k…], so s scales dim 0. ConvTranspose weights are
[C_in, C_out/g, k…]: output channel o = group·(C_out/g) + j lives in dim 1 of the
group's slice, so s is applied along dim 1 per group. Arithmetic is in float64, then cast
back to the weight's dtype; agreement with the unfused graph is checked by onnxruntime in
the tests (max abs diff ≤ 1e-4 on unit-scale inputs, relative 1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segcost.ir import Graph, Initializer
from segcost.passes._infra import PassBase, PassResult

__all__ = ["FuseConvBatchNormPass", "MatchResult"]

FUSABLE = ("Conv", "ConvTranspose")


@dataclass
class MatchResult:
    """Outcome of checking one candidate; `reason` says why a rule did not fire."""

    ok: bool
    reason: str = ""

    @classmethod
    def fail(cls, reason: str) -> MatchResult:
        return cls(False, reason)


class FuseConvBatchNormPass(PassBase):
    """Conv → BatchNormalization becomes one Conv with folded weights and bias.

    Refuses (with the reason recorded in `explanations`) when:
      1. the conv output has another consumer or is a graph output;
      2. BN is in training mode or has more than one output in use;
      3. a BN parameter or the conv weight/bias is not a constant initializer;
      4. the conv weight or bias is shared with another node;
      5. channel counts do not agree (C_in % group, BN size ≠ C_out).
    """

    name = "fuse-conv-bn"

    def __init__(self):
        self.explanations: list[tuple[str, str]] = []

    def call(self, graph: Graph) -> PassResult:
        self.explanations = []
        fused = []
        for bn_key in graph.topological_order():
            if bn_key not in graph.dag:
                continue
            bn = graph.node(bn_key)
            if bn.op_type != "BatchNormalization" or bn.domain:
                continue
            conv_key = graph.producer(bn.inputs[0])
            match = self.check(graph, conv_key, bn_key)
            if not match.ok or conv_key is None:  # check() refuses a missing producer; this narrows it
                self.explanations.append((bn_key, match.reason))
                continue
            self.rewrite(graph, conv_key, bn_key)
            fused.append((conv_key, bn_key))
        notes = [f"fused {len(fused)} Conv-BatchNormalization pairs"] if fused else []
        notes += [f"not fused {key}: {reason}" for key, reason in self.explanations]
        return PassResult(graph, bool(fused), notes)

    def check(self, graph: Graph, conv_key: str | None, bn_key: str) -> MatchResult:
        if conv_key is None:
            return MatchResult.fail("input is not produced by a node")
        conv, bn = graph.node(conv_key), graph.node(bn_key)
        if conv.op_type not in FUSABLE or conv.domain:
            return MatchResult.fail(f"input comes from {conv.op_type}, not Conv/ConvTranspose")
        conv_output = conv.outputs[0]
        if graph.consumers(conv_output) != [bn_key] or conv_output in graph.outputs:
            return MatchResult.fail(f"{conv_key} output has other users")
        if bn.attrs.get("training_mode", 0) or any(tensor for tensor in bn.outputs[1:]):
            return MatchResult.fail("BatchNormalization is in training mode")
        for tensor in bn.inputs[1:5]:
            if tensor not in graph.initializers:
                return MatchResult.fail(f"BN parameter {tensor!r} is not constant")
        weight_name = conv.inputs[1]
        if weight_name not in graph.initializers:
            return MatchResult.fail(f"{conv_key} weight is not constant")
        bias_name = conv.inputs[2] if len(conv.inputs) > 2 and conv.inputs[2] else None
        if bias_name is not None and bias_name not in graph.initializers:
            return MatchResult.fail(f"{conv_key} bias is not constant")
        for tensor in filter(None, (weight_name, bias_name)):
            if graph.consumers(tensor) != [conv_key]:
                return MatchResult.fail(f"{tensor!r} is shared with another node")
        weight_shape = graph.initializers[weight_name].shape
        group = int(conv.attrs.get("group", 1))
        out_channels = weight_shape[0] if conv.op_type == "Conv" else weight_shape[1] * group
        if conv.op_type == "Conv" and out_channels % group:
            return MatchResult.fail(f"C_out {out_channels} not divisible by group {group}")
        input_shape = graph.shape(conv.inputs[0])
        if input_shape is not None and isinstance(input_shape[1], int):
            expected_in = weight_shape[1] * group if conv.op_type == "Conv" else weight_shape[0]
            if input_shape[1] != expected_in:
                return MatchResult.fail(
                    f"C_in {input_shape[1]} does not match weight {list(weight_shape)}, group {group}")
        if graph.initializers[bn.inputs[1]].size != out_channels:
            return MatchResult.fail(f"BN has {graph.initializers[bn.inputs[1]].size} channels, conv {out_channels}")
        return MatchResult(True)

    def rewrite(self, graph: Graph, conv_key: str, bn_key: str) -> None:
        conv, bn = graph.node(conv_key), graph.node(bn_key)
        gamma, beta, mean, var = (graph.initializers[name].array.astype(np.float64) for name in bn.inputs[1:5])
        scale = gamma / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
        weight_init = graph.initializers[conv.inputs[1]]
        weight = weight_init.array
        group = int(conv.attrs.get("group", 1))
        if conv.op_type == "Conv":
            folded = weight.astype(np.float64) * scale.reshape(-1, *([1] * (weight.ndim - 1)))
        else:
            grouped = weight.astype(np.float64).reshape(group, weight.shape[0] // group, *weight.shape[1:])
            per_group_scale = scale.reshape(group, 1, weight.shape[1], *([1] * (weight.ndim - 2)))
            folded = (grouped * per_group_scale).reshape(weight.shape)
        bias_name = conv.inputs[2] if len(conv.inputs) > 2 and conv.inputs[2] else None
        bias = graph.initializers[bias_name].array.astype(np.float64) if bias_name else np.zeros_like(scale)
        folded_bias = scale * (bias - mean) + beta
        new_weight = f"{conv.inputs[1]}__bn"
        new_bias = f"{bias_name or conv_key + '.bias'}__bn"
        graph.initializers[new_weight] = Initializer.from_array(new_weight, folded.astype(weight.dtype))
        graph.initializers[new_bias] = Initializer.from_array(new_bias, folded_bias.astype(weight.dtype))
        for name in filter(None, (conv.inputs[1], bias_name, *bn.inputs[1:5])):
            if len(graph.consumers(name)) <= 1 and name not in (new_weight, new_bias):
                graph.initializers.pop(name, None)
        # The conv now produces BN's output tensor under its own name.
        old_output = conv.outputs[0]
        graph.remove_node(bn_key)
        graph.replace_input(conv_key, conv.inputs[1], new_weight)
        if bias_name:
            graph.replace_input(conv_key, bias_name, new_bias)
        else:
            graph.append_input(conv_key, new_bias)
        graph.rename_output(conv_key, old_output, bn.outputs[0])
        graph.tensors.pop(old_output, None)
        graph.node(conv_key).meta["created_by"] = self.name
