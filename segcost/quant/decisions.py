"""The per-pixel decision a segmentation output encodes, for class agreement and mIoU.

The rule is read from the graph — the op that computes the output's values, found back
through value-keeping ops (`output_source`: Resize, Reshape, Transpose, Cast, Slice, Gather, …):

* ``CLASS_IDS`` — the output holds class ids: an ArgMax (or TopK's indices) computes it, whatever
  its dtype (a float class map, ArgMax → Cast(float), is still ids), or it is an integer tensor;
  N×1×H×W or N×H×W. The values are the class ids themselves.
* ``PROBABILITY`` — one channel N×1×H×W computed by a Softmax, Sigmoid or HardSigmoid (smp
  ``activation="sigmoid"``, or a two-class ``softmax(logits, 1)[:, 1:2]``): foreground where p > 0.5.
* ``BINARY`` — any other one-channel float N×1×H×W (binary segmentation, smp ``classes=1``): a
  logit, foreground where logit > 0 (sigmoid > 0.5), two classes {0, 1}.
* ``ARGMAX`` — float scores N×C×H×W with C > 1: the class is argmax over C.

Layout (`OutputSource.channels_last`): an output is N×H×W×C only on evidence — a Transpose with
perm [0, 2, 3, 1] between the computing op and the output (through elementwise ops); its values
are then read as N×C×H×W. Without evidence an N×H×W×1 output (C = 1 last, H first) is a
one-channel map N×1×H×W — its last axis is dropped — and any other rank-4 output is N×C×H×W:
H is never taken for C.

The basis of the rule is reported (`decision_basis`): a logit read from an op that is neither
a linear layer nor one of the above (a Relu or Clip at the end, a graph input) is said to be
assumed. Values that contradict the rule (`decision_conflict`: a probability outside [0, 1],
class ids that are not whole numbers, a "logit" of non-negative whole numbers, i.e. a class
map segcost cannot trace to an ArgMax) make the decision unusable: `--max-drop` then cannot
be checked.

Any other output (a float tensor not of rank 4, an integer tensor of another shape) has no
per-pixel decision: its agreement is None and it cannot carry `--max-drop`'s class measure.

Labels (H×W ints) are compared with the decisions: label values < 0 and 255 (the usual
ignore index) are ignored for BINARY and CLASS_IDS, where the class count is not known;
for ARGMAX, labels outside 0..C−1 are ignored; for BINARY every other non-zero label is
foreground. mIoU is the mean IoU over the ids present in the labels or the predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

ARGMAX, BINARY, PROBABILITY, CLASS_IDS = "argmax", "logit > 0", "probability > 0.5", "class ids"
IGNORE_LABEL = 255
# Ops between an output's last computing node and the output that keep its values' meaning (a Slice or
# Gather picks channels: softmax(x, 1)[:, 1:2] is still a probability).
_PASS_THROUGH = frozenset({"Resize", "Upsample", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Transpose",
                           "Flatten", "Cast", "Slice", "Gather", "Split", "Expand", "Tile", "DepthToSpace",
                           "SpaceToDepth"})
_CLASS_OPS = frozenset({"ArgMax", "ArgMin", "TopK"})           # TopK: its indices output only
_PROBABILITY_OPS = frozenset({"Sigmoid", "HardSigmoid", "Softmax"})
# Ops whose output is naturally an unbounded score (a logit): reading them as a logit is no assumption.
_LOGIT_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Sum", "Einsum",
                        "BatchNormalization", "InstanceNormalization", "LayerNormalization", "QLinearConv",
                        "ConvInteger", "MatMulInteger", "DequantizeLinear"})
# Elementwise ops a layout Transpose may be followed by before the output.
_ELEMENTWISE = frozenset({"Identity", "Cast", "Sigmoid", "HardSigmoid", "Relu", "Clip", "LeakyRelu", "Tanh",
                          "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Exp", "Log", "Round", "Floor", "Ceil"})
_NCHW_TO_NHWC = [0, 2, 3, 1]


@dataclass(frozen=True)
class OutputSource:
    """What computes an output's values, found back through _PASS_THROUGH ops.

    op: op_type of the computing node ("ArgMax", "Softmax", "Conv", …; "TopK values" for TopK's
    values output), None when the values come from a graph input or a constant; through: the
    pass-through ops between it and the output, output side last; channels_last: the values are
    N×H×W×C (a Transpose perm [0, 2, 3, 1] before the output, through elementwise ops).
    """

    op: str | None
    through: tuple[str, ...] = ()
    channels_last: bool = False


def output_source(model: onnx.ModelProto, output: str) -> OutputSource:
    """The OutputSource of graph tensor `output` (module docstring)."""
    producers = {tensor: node for node in model.graph.node for tensor in node.output}
    tensor, node, through = output, producers.get(output), []
    for _ in range(len(model.graph.node)):
        if node is None or node.op_type not in _PASS_THROUGH or not node.input:
            break
        through.append(node.op_type)
        tensor = node.input[0]
        node = producers.get(tensor)
    op = None if node is None else node.op_type
    if node is not None and op == "TopK" and tensor != node.output[1]:
        op = "TopK values"
    return OutputSource(op, tuple(reversed(through)), _channels_last(producers, output))


def _channels_last(producers: dict, output: str) -> bool:
    """True when the nearest Transpose before `output` (through _ELEMENTWISE ops) has perm [0, 2, 3, 1]."""
    node = producers.get(output)
    for _ in range(len(producers) + 1):
        if node is None or node.op_type not in _ELEMENTWISE | {"Transpose"}:
            return False
        if node.op_type == "Transpose":
            perm = next((list(attr.ints) for attr in node.attribute if attr.name == "perm"), None)
            return perm == _NCHW_TO_NHWC
        node = producers.get(node.input[0]) if node.input else None
    return False


def as_nchw(values: np.ndarray, source: OutputSource | None) -> np.ndarray:
    """`values` in the layout decisions read: N×H×W×C → N×C×H×W on evidence (source.channels_last); without
    evidence an N×H×W×1 array (H > 1) becomes N×1×H×W (a one-channel map, never H taken for C); else unchanged."""
    if values.ndim != 4:
        return values
    if source is not None and source.channels_last:
        return values.transpose(0, 3, 1, 2)
    if values.shape[3] == 1 and values.shape[1] != 1:
        return values.transpose(0, 3, 1, 2)
    return values


def decision_kind(values: np.ndarray, activation: str | None = None) -> str | None:
    """ARGMAX, BINARY, PROBABILITY or CLASS_IDS for an N×C×H×W (or N×H×W) output array whose values are computed
    by op `activation` (module docstring); None when it encodes no per-pixel class."""
    one_map = values.ndim == 3 or (values.ndim == 4 and values.shape[1] == 1)
    if activation in _CLASS_OPS or np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_:
        return CLASS_IDS if one_map else None
    if values.ndim == 4 and values.shape[1] == 1:
        return PROBABILITY if activation in _PROBABILITY_OPS else BINARY
    return ARGMAX if values.ndim == 4 else None


def decision_basis(kind: str, source: OutputSource | None) -> str:
    """Why `kind` was chosen, for the report: the op found in the graph, or what was assumed and why."""
    op = None if source is None else source.op
    chain = " → ".join([op or "?", *(source.through if source else ())])
    layout = ", channels last (Transpose perm [0, 2, 3, 1])" if source is not None and source.channels_last else ""
    if kind == CLASS_IDS:
        return (f"{chain} in the graph" if op in _CLASS_OPS else "an integer output") + layout
    if kind == PROBABILITY:
        return f"{chain} in the graph" + layout
    if kind == ARGMAX:
        return f"scores from {chain}" + layout
    if op in _LOGIT_OPS:
        return f"a logit from {chain}" + layout
    return (f"assumed a logit: its last op {op or '(none: an input or constant)'} is no ArgMax/TopK (class ids), "
            f"Softmax/Sigmoid/HardSigmoid (probability) or linear layer (logit)" + layout)


def decision_conflict(kind: str, low: float, high: float, whole: bool) -> str | None:
    """Why values in [low, high] (`whole`: all whole numbers) contradict rule `kind`; None when they fit it."""
    if kind == PROBABILITY and (low < 0 or high > 1):
        return f"a probability rule on values in [{low:.4g}, {high:.4g}], outside [0, 1]"
    if kind == CLASS_IDS and not whole:
        return "a class-id rule on values that are not whole numbers"
    if kind == BINARY and whole and low >= 0:
        return (f"a logit rule on non-negative whole numbers (in [{low:.4g}, {high:.4g}]; a class map?) with no "
                "ArgMax/TopK found in the graph")
    return None


def decisions(values: np.ndarray, kind: str) -> np.ndarray:
    """N×H×W int64 class of each pixel of an output of form `kind` (N×C×H×W, or N×H×W for CLASS_IDS)."""
    if kind == ARGMAX:
        return values.argmax(1).astype(np.int64)
    if kind in (BINARY, PROBABILITY):
        return (values[:, 0] > (0.5 if kind == PROBABILITY else 0.0)).astype(np.int64)
    return np.rint(values.reshape(values.shape[0], *values.shape[-2:])).astype(np.int64)


def label_classes(label: np.ndarray, kind: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(class ids, valid mask) of an H×W label for an output of form `kind` with `channels` channels."""
    label = label.astype(np.int64)
    if kind == ARGMAX:
        return label, (label >= 0) & (label < channels)
    valid = (label >= 0) & (label != IGNORE_LABEL)
    return ((label > 0).astype(np.int64) if kind in (BINARY, PROBABILITY) else label), valid


@dataclass
class PairCounts:
    """Pixel counts per (label id, predicted id) pair: a sparse confusion matrix over whatever ids occur."""

    counts: dict[tuple[int, int], int] = field(default_factory=dict)

    def add(self, label: np.ndarray, pred: np.ndarray, valid: np.ndarray) -> None:
        """Count the pixels where `valid` (H×W arrays of the same shape)."""
        pairs = np.stack([label[valid], pred[valid]]).astype(np.int64)
        if not pairs.size:
            return
        keys, counts = np.unique(pairs, axis=1, return_counts=True)
        for (truth, predicted), count in zip(keys.T.tolist(), counts.tolist()):
            self.counts[(truth, predicted)] = self.counts.get((truth, predicted), 0) + count

    def miou(self) -> float:
        """Mean IoU in percent over the ids present in labels or predictions (0 when nothing was counted)."""
        truth: dict[int, int] = {}
        predicted: dict[int, int] = {}
        for (label, pred), count in self.counts.items():
            truth[label] = truth.get(label, 0) + count
            predicted[pred] = predicted.get(pred, 0) + count
        ids = truth.keys() | predicted.keys()
        if not ids:
            return 0.0
        ious = [(hits := self.counts.get((i, i), 0)) / (truth.get(i, 0) + predicted.get(i, 0) - hits) for i in ids]
        return float(100.0 * np.mean(ious))
