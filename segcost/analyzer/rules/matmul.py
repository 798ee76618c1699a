"""Matrix-product rules: Gemm, MatMul (batched, broadcast) and quantized forms, RNN cells.

MACs = batch · M · N · K, the batch being the broadcast of the operands' leading dims.
"""

from __future__ import annotations

from math import prod

from segcost.analyzer.registry import OpCost, OpView, baked_size_advice, cost_rule
from segcost.analyzer.rules.elementwise import activation_flops
from segcost.errors import ShapeError


def _broadcast(op: OpView, left: tuple[int, ...], right: tuple[int, ...]) -> tuple[int, ...]:
    width = max(len(left), len(right))
    left = (1,) * (width - len(left)) + left
    right = (1,) * (width - len(right)) + right
    out = []
    for a, b in zip(left, right):
        if a != b and 1 not in (a, b):
            raise ShapeError(f"node {op.key!r} ({op.op_type}): batch dims {list(left)} and {list(right)} "
                             "do not broadcast")
        out.append(max(a, b) if 0 not in (a, b) else 0)
    return tuple(out)


def matmul_cost(op: OpView, a_index: int, b_index: int, transpose_a: bool = False,
                transpose_b: bool = False) -> OpCost:
    """MatMul's cost of inputs a_index × b_index, either operand's last two dims swapped first if asked."""
    a_shape = op.input_shape(a_index)
    b_shape = op.input_shape(b_index)
    if transpose_a and len(a_shape) >= 2:
        a_shape = (*a_shape[:-2], a_shape[-1], a_shape[-2])
    if transpose_b and len(b_shape) >= 2:
        b_shape = (*b_shape[:-2], b_shape[-1], b_shape[-2])
    if not a_shape or not b_shape:
        raise ShapeError(f"node {op.key!r} ({op.op_type}): MatMul of a scalar is undefined")
    # numpy semantics: a 1-D operand is promoted to a matrix and the added dim dropped after.
    a_matrix = (1, *a_shape) if len(a_shape) == 1 else a_shape
    b_matrix = (*b_shape, 1) if len(b_shape) == 1 else b_shape
    m, k = a_matrix[-2:]
    k_b, n = b_matrix[-2:]
    if k != k_b:
        raise ShapeError(f"node {op.key!r} ({op.op_type}): inner dims differ ({list(a_shape)} × {list(b_shape)})"
                         f"{baked_size_advice(op)}")
    batch = _broadcast(op, a_matrix[:-2], b_matrix[:-2])
    output_shape = (*batch, *(() if len(a_shape) == 1 else (m,)), *(() if len(b_shape) == 1 else (n,)))
    return OpCost(macs=prod(batch) * m * n * k, kind="dense", output_shape=output_shape)


@cost_rule("MatMul", pure=True)
def matmul(op: OpView) -> OpCost:
    """MACs = prod(broadcast batch dims)·M·N·K (numpy matmul semantics, 1-D operands promoted)."""
    return matmul_cost(op, 0, 1)


@cost_rule("MatMulInteger")
def matmul_integer(op: OpView) -> OpCost:
    """MACs as MatMul (inputs A, B, a_zero_point, b_zero_point)."""
    return matmul_cost(op, 0, 1)


@cost_rule("QLinearMatMul")
def qlinear_matmul(op: OpView) -> OpCost:
    """MACs as MatMul (inputs a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp)."""
    return matmul_cost(op, 0, 3)


def gemm_cost(op: OpView, a_index: int, b_index: int, c_index: int) -> OpCost:
    """Gemm's cost with A, B and C at the given input positions (QGemm numbers them 0, 3, 6)."""
    a_shape = op.input_shape(a_index)
    b_shape = op.input_shape(b_index)
    if len(a_shape) != 2 or len(b_shape) != 2:
        raise ShapeError(f"{op.where}: A and B must be 2-D, got {list(a_shape)} and {list(b_shape)}")
    m, k = reversed(a_shape) if op.attr("transA", 0) else a_shape
    k_b, n = reversed(b_shape) if op.attr("transB", 0) else b_shape
    if k != k_b:
        raise ShapeError(f"{op.where}: inner dims differ ({list(a_shape)} × {list(b_shape)}, "
                         f"transA={op.attr('transA', 0)}, transB={op.attr('transB', 0)}){baked_size_advice(op)}")
    bias_adds = m * n if op.has_input(c_index) else 0
    return OpCost(macs=m * n * k, flops=bias_adds, kind="dense", output_shape=(m, n), bias_flops=bias_adds)


@cost_rule("Gemm", pure=True)
def gemm(op: OpView) -> OpCost:
    """MACs = M·N·K of op(A)·op(B); flops += M·N for the C add when C is given."""
    return gemm_cost(op, 0, 1, 2)


# The gate activations by default (ONNX RNN-14, GRU-14, LSTM-14: f; f, g; f, g, h), how many H-wide gate values
# each activation takes per step, and the elementwise flops per hidden unit and step besides the activations.
_RECURRENT: dict[str, tuple[tuple[str, ...], tuple[int, ...], int]] = {
    "RNN": (("Tanh",), (1,), 0),                          # Ht = f(...)
    "GRU": (("Sigmoid", "Tanh"), (2, 1), 5),              # z, r = f(...); h = g(...); rt ⊙ (·); (1 − z) ⊙ h + z ⊙ Ht-1
    "LSTM": (("Sigmoid", "Tanh", "Tanh"), (3, 1, 1), 4),  # i, f, o = f(...); c = g(...); Ct = f ⊙ Ct-1 + i ⊙ c;
}                                                         # Ht = o ⊙ h(Ct)
RNN_ACTIVATIONS = ("Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid",
                   "Elu", "Softsign", "Softplus")
PEEPHOLE_FLOPS = 6   # LSTM with P: P[iof] ⊙ C, + per gate (3 gates × multiply and add) per hidden unit and step


def _recurrent_cost(op: OpView) -> OpCost:
    # The gate count is implied by the weight's gates·hidden rows, so one helper serves all three.
    x_shape = op.input_shape(0)   # [seq, batch, input] (layout=0) or [batch, seq, input]
    w_shape = op.input_shape(1)   # [directions, gates·hidden, input]
    r_shape = op.input_shape(2)   # [directions, gates·hidden, hidden]
    seq, batch = (x_shape[1], x_shape[0]) if op.attr("layout", 0) else (x_shape[0], x_shape[1])
    directions = w_shape[0]
    gate_rows = w_shape[1]
    hidden = r_shape[2]
    per_step = gate_rows * (w_shape[2] + r_shape[2])
    bias_adds = seq * batch * directions * gate_rows * 2 if op.has_input(3) else 0
    defaults, widths, elementwise = _RECURRENT[op.op_type]
    names = list(op.attr("activations") or ()) or list(defaults) * directions
    if len(names) == len(defaults):   # one list for both directions
        names *= directions
    if len(names) != len(defaults) * directions:
        raise ShapeError(f"{op.where}: {len(names)} activations for {directions} direction(s) of "
                         f"{len(defaults)} ({', '.join(defaults)})")
    counts: list[int] = []
    for name in names:
        count = activation_flops(name)
        if count is None:
            text = name.decode() if isinstance(name, bytes) else str(name)
            raise ShapeError(f"{op.where}: activation {text!r} is none of the spec's ({', '.join(RNN_ACTIVATIONS)})")
        counts.append(count)
    steps = seq * batch * hidden   # per direction: every step of every sequence, H units each
    gate_inputs = sum(widths) * directions
    activation = steps * sum(count * widths[index % len(widths)] for index, count in enumerate(counts))
    activation += 2 * steps * gate_inputs if op.attr("clip") is not None else 0   # clip: min and max (as Clip)
    peephole = PEEPHOLE_FLOPS if op.op_type == "LSTM" and op.has_input(7) else 0
    elementwise_flops = steps * directions * (elementwise + peephole)
    return OpCost(macs=seq * batch * directions * per_step, flops=bias_adds + activation + elementwise_flops,
                  kind="dense", bias_flops=bias_adds,
                  category_flops=(("activation", activation), ("elementwise", elementwise_flops)))


@cost_rule("LSTM")
def lstm(op: OpView) -> OpCost:
    """MACs = T·B·D·4H·(I+H); flops = 2/gate row with B + T·B·D·H·(3f + g + h + 4, +6 P, +10 clip) (ONNX LSTM-14)."""
    return _recurrent_cost(op)


@cost_rule("GRU")
def gru(op: OpView) -> OpCost:
    """MACs = T·B·D·3H·(I+H); flops = 2 per gate row with B + T·B·D·H·(2f + g + 5, +6 clip) (ONNX GRU-14)."""
    return _recurrent_cost(op)


@cost_rule("RNN")
def rnn(op: OpView) -> OpCost:
    """MACs = T·B·D·H·(I+H); flops = 2 per row with B + T·B·D·H·(f, +2 clip) (ONNX RNN-14: Ht = f(...), Tanh 1)."""
    return _recurrent_cost(op)
