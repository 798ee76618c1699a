"""Concat scale sharing in a QDQ graph, decided over the whole graph.

A Concat of int8 tensors is a plain copy only when every input and the output use one
scale and zero point. Which tensors must share is a constraint problem, not a local
rewrite: a tensor can feed two Concats (a UNet skip into two decoder stages), a Concat
output can feed another Concat, and a tensor can feed ordinary layers besides its Concat.
Rewriting each input's QuantizeLinear to its Concat's scale, one Concat at a time, lets
the last Concat decide the scale every other consumer of that tensor reads (measured on
smp MAnet: an all-zero output).

The constraint graph: one member per quantized tensor that is a Concat input or output,
with its calibrated range [lo, hi] (read back from its scale and zero point). Union-find
joins each Concat's output with each input, but only when the joined group's range is at
most SHARE_RATIO× the range of every member whose values other layers read:

* a tensor whose only consumer is this Concat has no such limit: its values are used
  only inside the Concat, whose output scale bounds their precision anyway;
* any other member (a Concat output, a tensor that also feeds other layers or a second
  Concat) gives up at most log2(SHARE_RATIO) = 2 of its 8 bits to share.

An input that cannot join keeps its own scale for its other consumers, and the edge into
the Concat is requantized to the group's scale (DequantizeLinear → QuantizeLinear →
DequantizeLinear on that edge only). Then every group's scale and zero point are set
from the union of its members' ranges, so nothing clips.

A constant Concat input (a ViT's class token: DequantizeLinear of a quantized initializer)
joins its Concat's group with the range of its values and gets a private copy quantized
at the group's scale and zero point, so that Concat too is a plain int8 copy; its values
lose nothing the Concat's own output quantization did not already take. An input of 0
elements (by its shape, or an empty constant: smp UNet's missing skip) adds no values: it
joins no group and the check skips it.

A tensor whose clipping the quantizer moved into its QuantizeLinear (a Relu/Clip it
removed: segcost.passes.qdq_clips) joins a group only while the group's range stays inside
the activation's bounds; otherwise the edge is requantized, which clips there. Sharing a
signed Concat scale with a removed Relu's output (zero point 0 → ~120) passes the negatives
the Relu removed (measured: SQNR 2.4 dB, Relu → Concat with a signed sibling).

Every Concat input whose own range is more than DEGRADED_RATIO× smaller than its
Concat's keeps fewer than 4 of its 8 bits inside the Concat output; such inputs are named
in the notes (measured: a branch >~256× smaller than its sibling becomes all zeros —
INT8-PEERS.md, DeepLabV3Lite ASPP with random weights).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from segcost.ir import Graph, Initializer, Node, is_static_shape
from segcost.passes._infra import PassBase, PassResult
from segcost.passes.qdq import DEQUANTIZE, QUANTIZE, _constant, requantize_biases
from segcost.passes.qdq_clips import RemovedClip

__all__ = ["DEGRADED_RATIO", "SHARE_RATIO", "ShareConcatScalesPass", "concat_scale_mismatches"]

SHARE_RATIO = 4.0        # a shared member gives up at most 2 bits (log2 4) for the layers that read it
DEGRADED_RATIO = 16.0    # an input with less than 1/16 of its Concat's range keeps < 4 of 8 bits there


@dataclass
class _Member:
    tensor: str            # the float tensor quantized by `q_key`
    q_key: str
    lo: float
    hi: float
    dtype: np.dtype
    symmetric: bool
    tolerance: float       # how many times wider than its own range the shared range may be
    producer: str          # layer name for notes
    clip: tuple[float, float] = (-math.inf, math.inf)   # bounds a removed Relu/Clip puts on the shared range

    @property
    def width(self) -> float:
        return self.hi - self.lo


def _qrange(dtype: np.dtype, symmetric: bool) -> tuple[int, int]:
    if dtype == np.uint8:
        return 0, 255
    return (-127, 127) if symmetric else (-128, 127)  # onnxruntime's symmetric int8 range is ±127


def _quantizer(graph: Graph, tensor: str) -> str | None:
    """The QuantizeLinear that quantizes the float `tensor` (None if it is not quantized)."""
    return next((user for user in graph.consumers(tensor) if graph.node(user).op_type == QUANTIZE), None)


def _dequantized_input(graph: Graph, tensor: str) -> str | None:
    """For a Concat input produced by DQ(Q(T)), the Q node's key; else None."""
    dq_key = graph.producer(tensor)
    if dq_key is None or graph.node(dq_key).op_type != DEQUANTIZE:
        return None
    q_key = graph.producer(graph.node(dq_key).inputs[0])
    return q_key if q_key is not None and graph.node(q_key).op_type == QUANTIZE else None


def _constant_input(graph: Graph, tensor: str) -> np.ndarray | None:
    """For a Concat input produced by DQ(quantized initializer), its real values (per-axis scales too); else None."""
    dq_key = graph.producer(tensor)
    if dq_key is None or graph.node(dq_key).op_type != DEQUANTIZE:
        return None
    dq = graph.node(dq_key)
    values, scale = _constant(graph, dq.inputs[0]), _constant(graph, dq.inputs[1])
    zero = _constant(graph, dq.inputs[2]) if len(dq.inputs) > 2 and dq.inputs[2] else np.zeros((), np.int8)
    if values is None or scale is None or zero is None or values.dtype not in (np.int8, np.uint8):
        return None
    shape = [1] * values.ndim
    if scale.size > 1:
        axis = int(dq.attrs.get("axis", 1))
        shape[axis % values.ndim] = scale.size
    return (values.astype(np.float64) - zero.reshape(shape if zero.size > 1 else ()).astype(np.float64)) * \
        scale.reshape(shape if scale.size > 1 else ()).astype(np.float64)


def _empty(graph: Graph, tensor: str) -> bool:
    """A Concat input of 0 elements (its shape has a 0 dim, or it is an empty constant): it adds no values to the
    output, so neither its range nor its scale matters (smp UNet's decoder concatenates an empty skip)."""
    shape = graph.shape(tensor)
    if shape is not None and any(dim == 0 for dim in shape):
        return True
    if is_static_shape(shape) and all(dim > 0 for dim in shape):
        return False   # known to hold values: a constant input is dequantized once, by the caller
    values = _constant_input(graph, tensor)
    return values is not None and values.size == 0


def _scale_zero(graph: Graph, q_key: str) -> tuple[np.ndarray, np.ndarray] | None:
    node = graph.node(q_key)
    scale = _constant(graph, node.inputs[1])
    zero = _constant(graph, node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    if scale is None or zero is None or scale.size != 1 or zero.size != 1:
        return None  # per-axis activation quantization or a computed scale: not shared here
    return scale, zero


def _member(graph: Graph, q_key: str, concat: str | None, clips: dict[str, RemovedClip]) -> _Member | None:
    values = _scale_zero(graph, q_key)
    if values is None:
        return None
    scale, zero = float(values[0].reshape(())), values[1]
    symmetric = zero.dtype == np.int8 and int(zero.reshape(())) == 0
    qmin, qmax = _qrange(zero.dtype, symmetric)
    node = graph.node(q_key)
    readers = {user for dq in graph.consumers(node.outputs[0]) for tensor in graph.node(dq).outputs
               for user in graph.consumers(tensor)}
    only_this_concat = concat is not None and readers == {concat} and node.inputs[0] not in graph.outputs
    producer = graph.producer(node.inputs[0])
    zero_point = int(zero.reshape(()))
    clip = clips.get(node.inputs[0])
    return _Member(node.inputs[0], q_key, (qmin - zero_point) * scale, (qmax - zero_point) * scale, zero.dtype,
                   symmetric, math.inf if only_this_concat else SHARE_RATIO,
                   graph.node(producer).name or producer if producer else node.inputs[0],
                   (clip.lo, clip.hi) if clip else (-math.inf, math.inf))


class _Groups:
    """Union-find over member tensors; each root keeps the group's range and width limit."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.range: dict[str, tuple[float, float]] = {}
        self.cap: dict[str, float] = {}
        self.dtype: dict[str, tuple[np.dtype, bool]] = {}
        self.clip: dict[str, tuple[float, float]] = {}

    def add(self, member: _Member) -> None:
        if member.tensor not in self.parent:
            self.parent[member.tensor] = member.tensor
            self.range[member.tensor] = (member.lo, member.hi)
            self.cap[member.tensor] = member.width * member.tolerance
            self.dtype[member.tensor] = (member.dtype, member.symmetric)
            self.clip[member.tensor] = member.clip

    def find(self, tensor: str) -> str:
        root = tensor
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[tensor] != root:
            self.parent[tensor], tensor = root, self.parent[tensor]
        return root

    def union(self, a: str, b: str) -> bool:
        """Join the groups of a and b if the joined range fits every member's width limit and clip bounds."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        if self.dtype[ra] != self.dtype[rb]:
            return False
        lo = min(self.range[ra][0], self.range[rb][0])
        hi = max(self.range[ra][1], self.range[rb][1])
        cap = min(self.cap[ra], self.cap[rb])
        if hi - lo > cap * (1 + 1e-6):
            return False
        clip = (max(self.clip[ra][0], self.clip[rb][0]), min(self.clip[ra][1], self.clip[rb][1]))
        if lo < clip[0] or hi > clip[1]:
            return False  # a removed Relu/Clip would stop clipping
        self.parent[rb] = ra
        self.range[ra], self.cap[ra], self.clip[ra] = (lo, hi), cap, clip
        return True


def _group_params(lo: float, hi: float, dtype: np.dtype, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point covering [lo, hi] (onnxruntime's formulas: s = (hi − lo)/(qmax − qmin))."""
    qmin, qmax = _qrange(dtype, symmetric)
    if symmetric:
        scale = max(abs(lo), abs(hi)) / qmax
        zero = 0
    else:
        scale = (hi - lo) / (qmax - qmin)
        zero = int(np.clip(round(qmin - lo / scale), qmin, qmax)) if scale > 0 else 0
    return np.array(scale if scale > 0 else 1.0, np.float32), np.array(zero, dtype)


def _set_quant_params(graph: Graph, q_key: str, scale: str, zero: str) -> bool:
    node = graph.node(q_key)
    if node.inputs[1:3] == [scale, zero]:
        return False
    for key in (q_key, *graph.consumers(node.outputs[0])):
        pair = graph.node(key)
        if pair.op_type in (QUANTIZE, DEQUANTIZE):
            for old, new in zip(list(pair.inputs[1:3]), (scale, zero)):
                if old != new:
                    graph.replace_input(key, old, new)
    return True


class ShareConcatScalesPass(PassBase):
    """Give each group of Concat-connected tensors one scale where ranges allow; requantize the rest.

    Attributes:
        clips: {tensor: RemovedClip} from segcost.passes.qdq_clips.removed_clips — tensors whose
            quantization carries a removed activation's clipping (their group's range must stay
            inside its bounds).
    """

    name = "share-concat-scales"

    def __init__(self, clips: dict[str, RemovedClip] | None = None) -> None:
        self.clips = dict(clips or {})

    def call(self, graph: Graph) -> PassResult:
        groups = _Groups()
        members: dict[str, _Member] = {}
        edges: list[tuple[str, str, str]] = []  # (concat key, input tensor, member tensor)
        constants: list[tuple[str, str, np.ndarray]] = []   # (concat key, input tensor, its real values)
        order = graph.topological_order()
        for key in order:
            node = graph.node(key)
            if node.op_type != "Concat":
                continue
            out_q = _quantizer(graph, node.outputs[0])
            output = _member(graph, out_q, None, self.clips) if out_q else None
            if output is None:
                continue
            members.setdefault(output.tensor, output)
            groups.add(members[output.tensor])
            for tensor in dict.fromkeys(node.inputs):
                if _empty(graph, tensor):
                    continue
                q_key = _dequantized_input(graph, tensor)
                member = _member(graph, q_key, key, self.clips) if q_key else None
                values = _constant_input(graph, tensor) if member is None else None
                if values is not None:
                    constants.append((key, tensor, values))
                    groups.add(_Member(f"{tensor} -> {key}", "", min(float(values.min()), 0.0),
                                       max(float(values.max()), 0.0), output.dtype, output.symmetric, math.inf, ""))
                if member is None:
                    continue
                members.setdefault(member.tensor, member)
                if member.tolerance < members[member.tensor].tolerance:
                    members[member.tensor] = member
                groups.add(members[member.tensor])
                edges.append((key, tensor, member.tensor))
        if not edges and not constants:
            return PassResult(graph, False, [])
        requantize = [(concat, tensor, member) for concat, tensor, member in edges
                      if not groups.union(graph.node(concat).outputs[0], member)]
        for concat, tensor, _ in constants:   # a constant that does not fit is clipped by the output's Q anyway
            groups.union(graph.node(concat).outputs[0], f"{tensor} -> {concat}")
        params: dict[str, tuple[str, str]] = {}
        for tensor in members:
            root = groups.find(tensor)
            if root not in params:
                params[root] = self._params_for(graph, root, groups, [m for m in members.values()
                                                                        if groups.find(m.tensor) == root])
        shared = sum(_set_quant_params(graph, member.q_key, *params[groups.find(member.tensor)])
                     for member in members.values())
        for concat, tensor, _ in requantize:
            self._requantize_edge(graph, concat, tensor, params[groups.find(graph.node(concat).outputs[0])])
        for concat, tensor, values in constants:
            self._constant_at(graph, concat, tensor, values, params[groups.find(graph.node(concat).outputs[0])])
        if shared or requantize:
            requantize_biases(graph)
        summary = (f"Concat scales: {len({groups.find(t) for t in members})} shared-scale groups over "
                   f"{len({concat for concat, *_ in edges + constants})} Concats; {shared} tensors and "
                   f"{len(constants)} constant inputs set to their group's scale, "
                   f"{len(requantize)} Concat inputs requantized (range more than {SHARE_RATIO:g}x from the group's, "
                   "or outside a removed Relu/Clip's bounds)")
        notes = [summary]
        notes += self._degraded(graph, edges, members, groups)
        return PassResult(graph, bool(shared or requantize or constants), notes)

    @staticmethod
    def _params_for(graph: Graph, root: str, groups: _Groups, group: list[_Member]) -> tuple[str, str]:
        lo, hi = groups.range[root]
        widest = max(group, key=lambda member: member.width)
        if widest.lo <= lo + 1e-12 * abs(lo) and widest.hi >= hi - 1e-12 * abs(hi):
            node = graph.node(widest.q_key)
            return node.inputs[1], node.inputs[2]  # the widest member already covers the group
        scale, zero = _group_params(lo, hi, widest.dtype, widest.symmetric)
        names = (f"{root}_shared_scale", f"{root}_shared_zero_point")
        graph.initializers[names[0]] = Initializer.from_array(names[0], scale)
        graph.initializers[names[1]] = Initializer.from_array(names[1], zero)
        return names

    @staticmethod
    def _requantize_edge(graph: Graph, concat: str, tensor: str, params: tuple[str, str]) -> None:
        base = f"{tensor}_requantized_for_{graph.node(concat).name or concat}"
        quantized = Node(name=f"{base}_QuantizeLinear", op_type=QUANTIZE, inputs=[tensor, *params],
                         outputs=[f"{base}_q"])
        dequantized = Node(name=f"{base}_DequantizeLinear", op_type=DEQUANTIZE, inputs=[f"{base}_q", *params],
                           outputs=[base])
        graph.add_node(quantized)
        graph.add_node(dequantized)
        graph.replace_input(concat, tensor, base)

    @staticmethod
    def _constant_at(graph: Graph, concat: str, tensor: str, values: np.ndarray, params: tuple[str, str]) -> None:
        """Feed `concat` a copy of the constant `tensor` quantized at the group's scale and zero point."""
        scale, zero = _constant(graph, params[0]), _constant(graph, params[1])
        assert scale is not None and zero is not None, "group parameters are initializers"
        qmin, qmax = _qrange(zero.dtype, zero.dtype == np.int8 and int(zero.reshape(())) == 0)
        quantized = np.clip(np.round(values / float(scale.reshape(()))) + int(zero.reshape(())), qmin, qmax)
        base = f"{tensor}_at_{graph.node(concat).name or concat}"
        graph.initializers[f"{base}_quantized"] = Initializer.from_array(f"{base}_quantized",
                                                                         quantized.astype(zero.dtype))
        graph.add_node(Node(name=f"{base}_DequantizeLinear", op_type=DEQUANTIZE,
                            inputs=[f"{base}_quantized", *params], outputs=[base]))
        graph.replace_input(concat, tensor, base)

    @staticmethod
    def _degraded(graph: Graph, edges, members: dict[str, _Member], groups: _Groups) -> list[str]:
        notes = []
        for concat, _, member_tensor in edges:
            member = members[member_tensor]
            lo, hi = groups.range[groups.find(graph.node(concat).outputs[0])]
            ratio = (hi - lo) / member.width if member.width > 0 else math.inf
            if ratio > DEGRADED_RATIO:
                bits = max(0.0, 8 - math.log2(ratio))
                notes.append(f"degraded: Concat {graph.node(concat).name or concat} input from {member.producer} "
                             f"spans 1/{ratio:.0f} of the Concat's range (keeps ~{bits:.1f} of 8 bits there)")
        return notes


def concat_scale_mismatches(graph: Graph) -> list[str]:
    """Concats whose quantized inputs do not all carry the output's scale and zero point (values compared);
    an input of 0 elements adds nothing to the output, whatever its scale."""
    problems = []
    for key in graph.topological_order():
        node = graph.node(key)
        out_q = _quantizer(graph, node.outputs[0]) if node.op_type == "Concat" else None
        out = _scale_zero(graph, out_q) if out_q else None
        if out is None:
            continue
        for tensor in node.inputs:
            dq_key = graph.producer(tensor)
            if dq_key is None or graph.node(dq_key).op_type != DEQUANTIZE or _empty(graph, tensor):
                continue
            dq = graph.node(dq_key)
            scale, zero = _constant(graph, dq.inputs[1]), _constant(graph, dq.inputs[2]) if len(dq.inputs) > 2 else None
            if scale is None or zero is None or not (np.array_equal(scale, out[0]) and np.array_equal(zero, out[1])):
                problems.append(f"Concat {node.name or key}: input {tensor} is not at the output's scale")
    return problems
