"""The per-pixel decision a segmentation output encodes, for class agreement and mIoU.

Three output forms occur in deployed segmentation models:

* ``ARGMAX`` — float scores N×C×H×W with C > 1: the class is argmax over C.
* ``BINARY`` — one float logit channel N×1×H×W (binary segmentation, smp ``classes=1``): the
  decision is foreground where logit > 0 (sigmoid > 0.5), two classes {0, 1}.
* ``PROBABILITY`` — the same channel after a Sigmoid in the graph (smp ``activation="sigmoid"``;
  found by `output_activation`, through resampling/reshaping ops): foreground where p > 0.5.
* ``CLASS_IDS`` — an integer class map N×1×H×W or N×H×W (an ArgMax at the end of the
  graph, the form TIDL favours): the values are the class ids themselves.

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
# Ops between an output's last computing node and the output that keep its values' meaning.
_PASS_THROUGH = frozenset({"Resize", "Upsample", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Transpose",
                           "Flatten", "Cast"})
_PROBABILITY_OPS = frozenset({"Sigmoid", "HardSigmoid"})


def output_activation(model: onnx.ModelProto, output: str) -> str | None:
    """op_type of the node computing `output`'s values, looking back through _PASS_THROUGH ops; None for none."""
    producers = {tensor: node for node in model.graph.node for tensor in node.output}
    node = producers.get(output)
    for _ in range(len(model.graph.node)):
        if node is None or node.op_type not in _PASS_THROUGH or not node.input:
            break
        node = producers.get(node.input[0])
    return None if node is None else node.op_type


def decision_kind(values: np.ndarray, activation: str | None = None) -> str | None:
    """ARGMAX, BINARY, PROBABILITY or CLASS_IDS for an output array whose last computing op is `activation`
    (module docstring); None when it encodes no per-pixel class."""
    if np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_:
        return CLASS_IDS if values.ndim == 3 or (values.ndim == 4 and values.shape[1] == 1) else None
    if values.ndim == 4 and values.shape[1] == 1:
        return PROBABILITY if activation in _PROBABILITY_OPS else BINARY
    return ARGMAX if values.ndim == 4 else None


def decisions(values: np.ndarray, kind: str) -> np.ndarray:
    """N×H×W int64 class of each pixel of an output of form `kind`."""
    if kind == ARGMAX:
        return values.argmax(1).astype(np.int64)
    if kind in (BINARY, PROBABILITY):
        return (values[:, 0] > (0.5 if kind == PROBABILITY else 0.0)).astype(np.int64)
    return values.reshape(values.shape[0], *values.shape[-2:]).astype(np.int64)


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
