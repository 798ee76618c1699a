"""Fused attention ops: ONNX Attention-23 and com.microsoft Attention / MultiHeadAttention / GQA.

Scaled dot-product attention over B batches, N query heads, S queries and T keys (past
plus new), head sizes H (query·key) and H_v (value) does two batched matrix products:
MACs = B·N·S·T·H (Q·Kᵀ) + B·N·S·T·H_v (softmax(·)·V) — what torch's FlopCounterMode
counts for scaled_dot_product_attention (torch/utils/flop_counter.py, sdpa_flop_count).
With grouped heads (fewer key/value heads) every query head still does its own products.
The scores (B·N·S·T of them) cost, per score: 1 scale + 4 softmax (subtract max, exp,
sum, divide) + 1 per additive mask or bias given.

By convention category (analyzer.conventions), each part is what the standalone op it stands
for is: the softmax "activation" (Softmax), the scale, mask adds, rotary embedding and
softcap's divide and multiply "elementwise" (Mul/Add/Div), softcap's tanh "activation" (Tanh),
and the adds of a projection bias (com.microsoft Attention's, MultiHeadAttention's) "bias".

Input layouts are the ops' specs: onnx/docs/Operators.md#Attention (opset 23) and
onnxruntime/docs/ContribOperators.md (com.microsoft.Attention, MultiHeadAttention,
GroupQueryAttention).
"""

from __future__ import annotations

from segcost.analyzer.registry import OpCost, OpView, cost_rule
from segcost.errors import ShapeError
from segcost.ir.opforms import constant_value

MICROSOFT = ("com.microsoft",)
SCORE_FLOPS = 5  # scale + softmax's 4
SOFTMAX_FLOPS = 4  # subtract max, exp, sum, divide (as Softmax)
ROTARY_FLOPS = 3  # x·cos + rotate(x)·sin per element


def _shape(op: OpView, index: int) -> tuple[int, ...] | None:
    """Concrete shape of an optional input: None when omitted; ShapeError when given but unknown."""
    return op.input_shape(index) if op.has_input(index) else None


def _heads(op: OpView, name: str, hidden: int) -> tuple[int, int]:
    """(heads, head size) of a hidden size split over attribute `name` heads."""
    heads = int(op.attr(name, 0))
    if heads <= 0 or hidden % heads:
        raise ShapeError(f"{op.where}: attribute {name} = {heads} does not divide the hidden size {hidden}")
    return heads, hidden // heads


def _sdpa(batch: int, heads: int, queries: int, keys: int, head: int, value_head: int, masks: int,
          bias_adds: int = 0, elementwise: int = 0, activation: int = 0) -> OpCost:
    """The products' MACs; flops: the scores' scale, softmax and mask adds, plus the other parts given."""
    scores = batch * heads * queries * keys
    activation += SOFTMAX_FLOPS * scores
    elementwise += scores * (SCORE_FLOPS - SOFTMAX_FLOPS + masks)   # scale, masks
    return OpCost(macs=scores * (head + value_head), flops=activation + elementwise + bias_adds, kind="dense",
                  bias_flops=bias_adds, category_flops=(("activation", activation), ("elementwise", elementwise)))


@cost_rule("Attention")
def attention(op: OpView) -> OpCost:
    """MACs = B·N_q·S·T·(H + H_v), T = past + new keys; flops += B·N_q·S·T·(5 + masks + 3 if softcap)."""
    q, k, v = op.input_shape(0), op.input_shape(1), op.input_shape(2)
    if len(q) == 4:  # (B, N_q, S, H), (B, N_kv, L, H), (B, N_kv, L, H_v)
        batch, heads, queries, head = q
        keys, value_head = k[2], v[3]
    elif len(q) == 3:  # (B, S, N_q·H), (B, L, N_kv·H), (B, L, N_kv·H_v)
        batch, queries = q[0], q[1]
        heads, head = _heads(op, "q_num_heads", q[2])
        _, value_head = _heads(op, "kv_num_heads", v[2])
        keys = k[1]
    else:
        raise ShapeError(f"{op.where}: Q has rank {len(q)}; Attention takes a 3-D or 4-D Q")
    past = _shape(op, 4)
    keys += past[2] if past is not None else 0
    masks = int(op.has_input(3)) + int(bool(op.attr("is_causal", 0)))
    scores = batch * heads * queries * keys
    softcap = scores if op.attr("softcap", 0.0) else 0  # softcap·tanh(x/softcap): divide, tanh, multiply
    return _sdpa(batch, heads, queries, keys, head, value_head, masks, elementwise=2 * softcap, activation=softcap)


@cost_rule("Attention", domains=MICROSOFT)
def ms_attention(op: OpView) -> OpCost:
    """MACs = B·S·I·(D_q+D_k+D_v) (QKV projection) + B·S·T·(D_q + D_v); flops += bias adds + scores·(5 + masks)."""
    x, w = op.input_shape(0), op.input_shape(1)  # (B, S, I), (I, D_q + D_k + D_v)
    if len(x) != 3 or len(w) != 2 or w[0] != x[2]:
        raise ShapeError(f"{op.where}: input {list(x)} and weights {list(w)} do not form a projection")
    hidden_sizes = op.attr("qkv_hidden_sizes")
    d_q, d_k, d_v = (int(size) for size in hidden_sizes) if hidden_sizes else (w[1] // 3,) * 3
    if d_q + d_k + d_v != w[1] or d_q != d_k:
        raise ShapeError(f"{op.where}: weights {list(w)} do not split into q/k/v hidden sizes {[d_q, d_k, d_v]}")
    batch, queries = x[0], x[1]
    heads, head = _heads(op, "num_heads", d_q)
    _, value_head = _heads(op, "num_heads", d_v)
    past = _shape(op, 4)  # (2, B, N, P, H)
    keys = queries + (past[3] if past is not None and len(past) == 5 else 0)
    projection = batch * queries * x[2] * w[1]
    bias_adds = batch * queries * w[1] if op.has_input(2) else 0
    masks = int(op.has_input(3)) + int(op.has_input(5))
    cost = _sdpa(batch, heads, queries, keys, head, value_head, masks, bias_adds=bias_adds)
    return cost._replace(macs=cost.macs + projection)


@cost_rule("MultiHeadAttention", domains=MICROSOFT)
def multi_head_attention(op: OpView) -> OpCost:
    """MACs = B·S·T·(D + D_v) (packed QKV/KV, 3-D or per-head 4-D K/V); flops += bias adds + scores·(5 + masks)."""
    q = op.input_shape(0)
    k, v = _shape(op, 1), _shape(op, 2)
    if len(q) == 5:  # packed QKV (B, S, N, 3, H)
        batch, queries, heads, _, head = q
        keys, value_head = queries, head
    elif len(q) == 3:
        batch, queries = q[0], q[1]
        heads, head = _heads(op, "num_heads", q[2])
        if k is None:
            raise ShapeError(f"{op.where}: key is missing and query {list(q)} is not packed QKV")
        if len(k) == 5:  # packed KV (B, L, N, 2, H)
            keys, value_head = k[1], k[4]
        elif len(k) == 4:  # per-head (B, N, L, H)
            keys = k[2]
            value_head = v[3] if v is not None and len(v) == 4 else head
        else:  # (B, L, D)
            keys = k[1]
            value_head = _heads(op, "num_heads", v[2])[1] if v is not None and len(v) == 3 else head
            past = _shape(op, 6)  # (B, N, P, H)
            keys += past[2] if past is not None and len(past) == 4 else 0
    else:
        raise ShapeError(f"{op.where}: query has rank {len(q)}; MultiHeadAttention takes 3-D or packed 5-D")
    bias = _shape(op, 3)
    bias_adds = 0
    if bias is not None and len(q) == 3:  # added to the projected q, k, v before attention
        new_keys = k[1] if k is not None and len(k) == 3 else 0
        bias_adds = batch * queries * heads * head + batch * new_keys * heads * (head + value_head)
    masks = int(op.has_input(4)) + int(op.has_input(5))
    return _sdpa(batch, heads, queries, keys, head, value_head, masks, bias_adds=bias_adds)


@cost_rule("GroupQueryAttention", domains=MICROSOFT)
def group_query_attention(op: OpView) -> OpCost:
    """MACs = 2·B·N·S·T·H, T = total_sequence_length (else past+S); flops += scores·5 (+3 per q/k element if rotary)."""
    q = op.input_shape(0)
    if len(q) != 3:
        raise ShapeError(f"{op.where}: query has rank {len(q)}; GroupQueryAttention takes (B, S, D)")
    batch, queries, hidden = q
    heads, kv_heads = int(op.attr("num_heads", 0)), int(op.attr("kv_num_heads", 0))
    if heads <= 0 or kv_heads <= 0 or heads % kv_heads:
        raise ShapeError(f"{op.where}: num_heads = {heads} is not a multiple of kv_num_heads = {kv_heads}")
    packed = not op.has_input(1)
    width = heads + 2 * kv_heads if packed else heads
    if hidden % width:
        raise ShapeError(f"{op.where}: query hidden size {hidden} does not split into {width} heads")
    head = hidden // width
    keys = _total_sequence_length(op)
    if keys is None:
        past = _shape(op, 3)  # (B, N_kv, P, H)
        keys = queries + (past[2] if past is not None and len(past) == 4 else 0)
    rotary = ROTARY_FLOPS * batch * queries * (heads + kv_heads) * head if op.attr("do_rotary", 0) else 0
    return _sdpa(batch, heads, queries, keys, head, head, 0, elementwise=rotary)


def _total_sequence_length(op: OpView) -> int | None:
    if op.graph is None or not op.has_input(6):
        return None
    value = constant_value(op.graph, op.node.inputs[6])
    return int(value.reshape(-1)[0]) if value is not None and value.size == 1 else None


@cost_rule("RotaryEmbedding")
@cost_rule("RotaryEmbedding", domains=MICROSOFT)
def rotary_embedding(op: OpView) -> OpCost:
    """flops = 3·E·rot/H: x·cos ± x′·sin on the first rot of each head's H dims (rot = rotary_embedding_dim or H)."""
    shape = op.input_shape(0)   # (B, N, S, H), or (B, S, N·H) with num_heads
    if len(shape) == 4:
        head = shape[-1]
    elif len(shape) == 3:
        _, head = _heads(op, "num_heads", shape[-1])
    else:
        raise ShapeError(f"{op.where}: input {list(shape)} is neither (B, N, S, H) nor (B, S, hidden)")
    rotated = int(op.attr("rotary_embedding_dim", 0)) or head
    if rotated > head or rotated % 2:
        raise ShapeError(f"{op.where}: rotary_embedding_dim {rotated} must be even and at most the head size {head}")
    elements = 1
    for dim in shape:
        elements *= dim
    return OpCost(flops=ROTARY_FLOPS * (elements // head) * rotated)
