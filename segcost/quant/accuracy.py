"""How much int8 changes a model: per-layer SQNR, output agreement, mIoU.

Both models run in onnxruntime on the same samples. Per layer, the float activation is
compared with the dequantized int8 activation of the same tensor (the DequantizeLinear
after the tensor's QuantizeLinear): SQNR = 10·log10(Σf² / Σ(f − q)²) dB, summed over
all samples. Layers are ranked worst first — the sensitivity ranking used to choose
layers to keep in float (``--exclude-nodes``).

Non-finite values (NaN/±Inf) follow one rule, segcost.quant.nonfinite.finite_pairs: a position
where float and int8 disagree on them is an infinite error, and the tensor's SQNR −∞ dB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from segcost.errors import InputError
from segcost.quant.calibration import CalibrationSource
from segcost.quant.decisions import (
    PairCounts,
    as_nchw,
    decision_basis,
    decision_conflict,
    decision_kind,
    decisions,
    label_classes,
    output_source,
)
from segcost.quant.footprint import RENAMED_OUTPUT_SUFFIX
from segcost.quant.nonfinite import finite_pairs
from segcost.quant.ranges import chunks_by_bytes, float32_bytes, quiet_session, with_outputs


@dataclass
class LayerSQNR:
    """One quantized activation: SQNR in dB of its dequantized int8 value against float (module docstring);
    −∞ when `nonfinite_mismatches` (positions where one side is NaN/±Inf and the other differs) > 0."""

    tensor: str
    producer: str
    op_type: str
    sqnr_db: float
    nonfinite_mismatches: int = 0


@dataclass
class OutputAgreement:
    """How close the int8 output is to the float one, over all samples.

    sqnr_db = 10·log10(Σf² / Σ(f − q)²); relative_error = ‖f − q‖ / ‖f‖ (L2 over all
    elements); cosine = Σfq / (‖f‖‖q‖), 0 when either output is all zeros (no direction
    agrees with nothing). All-zero int8 output: `all_zero` is set and `drop()` is 100.
    `flat_samples`: samples on which the float output is constant to int8 precision (max − min
    below `int8_step`, the scale of the int8 model's output DequantizeLinear; or all values equal):
    such a sample does not exercise the model, and an SQNR over it measures nothing.
    With ±Inf in either output (NaN in the float one is an InputError): the sums run over the
    positions where both are finite, and sqnr_db is −∞ when `nonfinite_mismatches` > 0
    (finite_pairs; a failure of its own).
    """

    name: str
    sqnr_db: float
    relative_error: float
    max_abs_error: float
    cosine_similarity: float
    # % of pixels whose class decision agrees (segcost.quant.decisions: argmax over channels, logit > 0 of a
    # one-channel logit, or the ids of an integer class map); None for an output with no per-pixel class
    argmax_agreement_pct: float | None
    all_zero: bool = False
    decision: str | None = None   # how the class is read: "argmax", "logit > 0", "probability > 0.5", "class ids"
    decision_basis: str | None = None    # what in the graph chose `decision` (decisions.decision_basis)
    decision_problem: str | None = None  # the float values contradict `decision`: no agreement, --max-drop fails
    flat_samples: int = 0                # samples whose float output spans less than int8_step (or is constant)
    int8_step: float | None = None       # the int8 output's quantization step (None: the output is not quantized)
    nonfinite_mismatches: int = 0   # positions where float and int8 disagree on NaN/±Inf (finite_pairs)

    @property
    def agreement_text(self) -> str:
        """", argmax agreement 99.70% (scores from Conv)" (or "class-id", "foreground/background (logit > 0)")."""
        if self.decision_problem is not None:
            return f", no class agreement ({self.decision} by {self.decision_basis}: {self.decision_problem})"
        if self.argmax_agreement_pct is None:
            return ""
        what = {"class ids": "class-id", "logit > 0": "foreground/background (logit > 0)",
                "probability > 0.5": "foreground/background (probability > 0.5)"}.get(self.decision or "", "argmax")
        basis = f" ({self.decision_basis})" if self.decision_basis else ""
        return f", {what} agreement {self.argmax_agreement_pct:.2f}%{basis}"


# Below this an int8 output's error is more than ~32% of its signal (relative error = 10^(−SQNR/20)):
# the int8 model does not compute what the float one does. The project's own models measure
# 45–55 dB, third-party random-weight models 13–31 dB; a Relu whose clip was lost measured 2.4 dB.
MIN_OUTPUT_SQNR_DB = 10.0


@dataclass
class AccuracyReport:
    samples: int
    outputs: list[OutputAgreement]
    layers: list[LayerSQNR]
    miou_float: float | None = None
    miou_int8: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def miou_drop(self) -> float | None:
        if self.miou_float is None or self.miou_int8 is None:
            return None
        return self.miou_float - self.miou_int8

    def failures(self) -> list[str]:
        """One line per output the int8 model does not reproduce (all zeros, SQNR < MIN_OUTPUT_SQNR_DB, or
        NaN/±Inf where the float output differs).

        When the float output is flat (`OutputAgreement.flat_samples`) on most samples, the line says
        that the data does not exercise the model: the failure stands (a metric never flatters), but
        its likely cause is the data (synthetic shapes for a text detector), not int8.
        """
        return [(f"int8 output {output.name!r} is all zeros (the float one is not)" if output.all_zero else
                 f"int8 output {output.name!r} has SQNR {output.sqnr_db:.1f} dB against float, below "
                 f"{MIN_OUTPUT_SQNR_DB:g} dB (relative error {output.relative_error:.2f})") + self._flat_text(output)
                for output in self.outputs if not output.nonfinite_mismatches
                and (output.all_zero or output.sqnr_db < MIN_OUTPUT_SQNR_DB)] + self._nonfinite_failures()

    def _nonfinite_failures(self) -> list[str]:
        return [f"int8 output {output.name!r} disagrees with the float one on NaN/±Inf values at "
                f"{output.nonfinite_mismatches:,} positions (SQNR −∞ dB)"
                for output in self.outputs if output.nonfinite_mismatches]

    def _flat_text(self, output: OutputAgreement) -> str:
        """"; the float output is constant ... on 11 of 16 samples: ..." when that is most samples, else ""."""
        if not self.samples or 2 * output.flat_samples <= self.samples:
            return ""
        within = "is constant" if output.int8_step is None else \
            f"spans less than one int8 step ({output.int8_step:.3g})"
        where = "every sample" if output.flat_samples == self.samples else \
            f"{output.flat_samples} of {self.samples} samples"
        return (f"; the float output {within} on {where}: the data does not exercise the model, so SQNR says "
                "little there; calibrate and evaluate on real images (--calib DIR, --eval DIR)")

    def drop(self) -> float | None:
        """The accuracy drop `--max-drop` is checked against, in percentage points; None when it cannot be measured.

        100 when an int8 output is all zeros and the float one is not; None when an output's values
        contradict its decision rule (a probability outside [0, 1], …: decisions.decision_conflict);
        else mIoU percentage points when there are labels; else the largest % of pixels whose class
        changed over the outputs with a per-pixel class (segcost.quant.decisions); None when no output
        has one (`unmeasured_reason` says why) — never 0 for "not measured".
        """
        if any(output.all_zero for output in self.outputs):
            return 100.0
        if any(output.decision_problem for output in self.outputs):
            return None
        if self.miou_drop is not None:
            return self.miou_drop
        changed = [100.0 - output.argmax_agreement_pct for output in self.outputs
                   if output.argmax_agreement_pct is not None]
        return max(changed) if changed else None

    def unmeasured_reason(self) -> str:
        """Why `drop()` is None: the outputs and what they lack."""
        problems = [f"output {output.name!r} is decided as {output.decision} ({output.decision_basis}) but its "
                    f"float values contradict it: {output.decision_problem}"
                    for output in self.outputs if output.decision_problem]
        if problems:
            return "; ".join(problems)
        names = ", ".join(repr(output.name) for output in self.outputs) or "none"
        return (f"no output has a per-pixel class (outputs: {names}; a class needs N×C×H×W float scores, an N×1×H×W "
                "logit, or an integer class map N×1×H×W / N×H×W) and there are no labels for mIoU")


def _activation_pairs(int8_model: onnx.ModelProto) -> list[tuple[str, str, str, str]]:
    """(float tensor, its dequantized twin, producer node, producer op) for every quantized activation."""
    producers = {output: node for node in int8_model.graph.node for output in node.output}
    constants = {init.name for init in int8_model.graph.initializer}
    consumers: dict[str, list] = {}
    for node in int8_model.graph.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node)
    pairs = []
    for node in int8_model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in constants:
            continue
        twin = next((user.output[0] for user in consumers.get(node.output[0], [])
                     if user.op_type == "DequantizeLinear"), None)
        producer = producers.get(node.input[0])
        if twin is None or producer is None:
            continue
        if producer.op_type == "DequantizeLinear":  # a Concat edge requantized to its Concat's scale
            first_q = producers.get(producer.input[0])
            source = producers.get(first_q.input[0]) if first_q is not None else None
            concat = next((user.name for user in consumers.get(twin, []) if user.op_type == "Concat"), "?")
            if first_q is not None and source is not None:
                pairs.append((first_q.input[0], twin, f"{source.name} -> {concat}", "Concat input"))
            continue
        pairs.append((node.input[0], twin, producer.name, producer.op_type))
    return pairs


def confusion(pred: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    valid = (label >= 0) & (label < num_classes)
    return np.bincount(num_classes * label[valid].astype(np.int64) + pred[valid].astype(np.int64),
                       minlength=num_classes ** 2).reshape(num_classes, num_classes)


def miou_from_confusion(matrix: np.ndarray) -> float:
    """Mean IoU in percent over the classes present in labels or predictions."""
    intersection = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - np.diag(matrix)
    present = union > 0
    return float(100.0 * np.mean(intersection[present] / union[present])) if present.any() else 0.0


def _sqnr(signal: float, noise: float) -> float:
    """10·log10(signal/noise) dB; inf when exact; 0 dB for a zero signal with noise (never flatters)."""
    if noise == 0:
        return float("inf")
    return float(10 * np.log10(signal / noise)) if signal > 0 else 0.0


PER_RUN_BYTES = 256 << 20   # compared activations returned by one onnxruntime run, per model (2 models)


def compare_models(float_model: onnx.ModelProto, int8_model: onnx.ModelProto, source: CalibrationSource,
                   per_layer: bool = True) -> AccuracyReport:
    float_tensors = {output for node in float_model.graph.node for output in node.output}
    pairs = []
    for tensor, twin, producer, op_type in (_activation_pairs(int8_model) if per_layer else []):
        if tensor not in float_tensors and tensor.endswith(RENAMED_OUTPUT_SUFFIX):
            tensor = tensor[: -len(RENAMED_OUTPUT_SUFFIX)]
        if tensor in float_tensors:
            pairs.append((tensor, twin, producer, op_type))
    output_names = [output.name for output in float_model.graph.output]
    steps = _output_steps(int8_model)
    signal = {twin: 0.0 for _, twin, *_ in pairs}
    noise = dict(signal)
    mismatches = dict.fromkeys(signal, 0)
    stats: dict[str, dict] = {name: {"max_abs": 0.0, "dot": 0.0, "aa": 0.0, "bb": 0.0, "dd": 0.0, "agree": 0,
                                     "mismatches": 0, "pixels": 0, "decision": None, "low": np.inf, "high": -np.inf,
                                     "whole": True, "flat": 0, "step": steps.get(name),
                                     "source": output_source(float_model, name)} for name in output_names}
    confusion_float = confusion_int8 = None
    samples = 0
    notes: list[str] = []
    chunks = _chunks(pairs, _tensor_bytes(float_model)) or [[]]
    for index, chunk in enumerate(chunks):
        float_session = quiet_session(with_outputs(float_model, [tensor for tensor, *_ in chunk]))
        int8_session = quiet_session(with_outputs(int8_model, [twin for _, twin, *_ in chunk]))
        for sample in source:
            float_values = dict(zip([o.name for o in float_session.get_outputs()],
                                    float_session.run(None, sample.feeds)))
            int8_values = dict(zip([o.name for o in int8_session.get_outputs()], int8_session.run(None, sample.feeds)))
            for tensor, twin, *_ in chunk:
                reference, value, bad = finite_pairs(float_values[tensor].astype(np.float64),
                                                     int8_values[twin].astype(np.float64))
                signal[twin] += float(np.sum(reference ** 2))
                noise[twin] += float(np.sum((reference - value) ** 2))
                mismatches[twin] += bad
            if index == 0:
                samples += 1
                confusion_float, confusion_int8 = _compare_outputs(
                    float_values, int8_values, output_names, stats, sample, notes, confusion_float, confusion_int8)
        del float_session, int8_session
    layers = [LayerSQNR(tensor, producer, op_type,
                        -np.inf if mismatches[twin] else _sqnr(signal[twin], noise[twin]), mismatches[twin])
              for tensor, twin, producer, op_type in pairs]
    return _report(samples, output_names, stats, layers, notes, confusion_float, confusion_int8)


def _output_steps(int8_model: onnx.ModelProto) -> dict[str, float]:
    """The quantization step of each graph output an int8 DequantizeLinear produces: its scale (the
    smallest, when per channel); outputs left in float are absent."""
    scales = {tensor.name: tensor for tensor in int8_model.graph.initializer}
    outputs = {output.name for output in int8_model.graph.output}
    steps = {}
    for node in int8_model.graph.node:
        if node.op_type == "DequantizeLinear" and node.output[0] in outputs and node.input[1] in scales:
            scale = onnx.numpy_helper.to_array(scales[node.input[1]])
            if scale.size and np.issubdtype(scale.dtype, np.floating):
                steps[node.output[0]] = float(np.abs(scale).min())
    return steps


def _tensor_bytes(model: onnx.ModelProto) -> dict[str, int]:
    """float32 bytes of each tensor with a known shape in `model` (symbolic dims count as 1: one sample)."""
    return {info.name: float32_bytes(info) for info in [*model.graph.value_info, *model.graph.output]}


def _chunks(pairs: list, sizes: dict[str, int], budget: int | None = None) -> list[list]:
    """Split the compared tensors so that one run returns at most `budget` bytes of them per model.

    Every requested tensor is an output of the session run and stays alive until the run
    returns: all of a 576x576 UperNet's activations at once are gigabytes. Unknown sizes
    count as 64 MiB.
    """
    return chunks_by_bytes(pairs, lambda pair: sizes.get(pair[0], 64 << 20),
                           PER_RUN_BYTES if budget is None else budget)


def _compare_outputs(float_values, int8_values, output_names, stats, sample, notes, confusion_float, confusion_int8):
    """Accumulate one sample's output agreement (and confusion matrices when it has labels).

    Metrics over the positions where both outputs are finite, NaN/±Inf disagreements counted
    (finite_pairs): ±Inf is a value (a masked logit, log 0) that int8 may or may not reproduce.

    Raises:
        InputError: the float model computes NaN in an output on this (finite) sample: there is no
            reference value to compare with (0/0, ∞ − ∞, log of a negative number in the model).
    """
    for name in output_names:
        full = float_values[name].astype(np.float64)
        bad = int(np.count_nonzero(np.isnan(full)))
        if bad:
            raise InputError(f"the float model computes {bad:,} non-finite values (NaN) in output {name!r} "
                             "on the evaluation data; int8 accuracy cannot be measured against it")
        a, b, mismatched = finite_pairs(full, int8_values[name].astype(np.float64))
        entry = stats[name]
        entry["mismatches"] += mismatched
        entry["max_abs"] = max(entry["max_abs"], float(np.abs(a - b).max()) if a.size else 0.0)
        entry["dot"] += float(np.sum(a * b))
        entry["aa"] += float(np.sum(a * a))
        entry["bb"] += float(np.sum(b * b))
        entry["dd"] += float(np.sum((a - b) ** 2))
        finite = full[np.isfinite(full)]
        if finite.size:
            entry["low"] = min(entry["low"], float(finite.min()))
            entry["high"] = max(entry["high"], float(finite.max()))
            entry["whole"] = entry["whole"] and bool(np.all(finite == np.rint(finite)))
        spread = float(finite.max() - finite.min()) if finite.size else 0.0
        entry["flat"] += spread == 0 or (entry["step"] is not None and spread < entry["step"])
        values = as_nchw(float_values[name], entry["source"])
        kind = decision_kind(values, entry["source"].op)
        if kind is not None and entry["pixels"] == 0:
            entry["decision"] = kind
        if kind is not None and kind == entry["decision"]:
            want = decisions(values, kind)
            got = decisions(as_nchw(int8_values[name], entry["source"]), kind)
            entry["agree"] += int(np.sum(want == got))
            entry["pixels"] += want.size
        if name == output_names[0]:  # the labels are compared with the first output's decisions
            first, first_kind = values, kind
            first_decisions = (want, got) if kind is not None and kind == entry["decision"] else None
    kind = first_kind
    spatial = tuple(first.shape[-2:]) if kind is not None else ()
    if sample.label is not None and kind is not None and tuple(sample.label.shape) != spatial:
        mismatch = (f"no mIoU: the labels are {'x'.join(map(str, sample.label.shape))} but the output "
                    f"{output_names[0]!r} is {'x'.join(map(str, spatial))} (no upsampling to the input)")
        if mismatch not in notes:
            notes.append(mismatch)
    elif sample.label is not None and kind is not None:
        if confusion_float is None:
            confusion_float, confusion_int8 = PairCounts(), PairCounts()
        truth, valid = label_classes(sample.label, kind, first.shape[1])
        want, got = first_decisions or (decisions(first, kind),
                                        decisions(as_nchw(int8_values[output_names[0]],
                                                          stats[output_names[0]]["source"]), kind))
        confusion_float.add(truth, want[0], valid)
        confusion_int8.add(truth, got[0], valid)
    return confusion_float, confusion_int8


def _report(samples, output_names, stats, layers: list[LayerSQNR], notes, confusion_float, confusion_int8
            ) -> AccuracyReport:
    outputs = []
    for name, entry in stats.items():
        norm = np.sqrt(entry["aa"] * entry["bb"])
        all_zero = entry["bb"] == 0 and entry["aa"] > 0
        if all_zero:
            notes.append(f"output {name!r} of the int8 model is all zeros (the float model's is not)")
        kind = entry["decision"] if entry["pixels"] else None
        problem = None if kind is None else decision_conflict(kind, entry["low"], entry["high"], entry["whole"])
        mismatched = entry["mismatches"]
        outputs.append(OutputAgreement(
            name, -np.inf if mismatched else _sqnr(entry["aa"], entry["dd"]),
            float(np.sqrt(entry["dd"] / entry["aa"])) if entry["aa"] else (0.0 if entry["dd"] == 0 else float("inf")),
            entry["max_abs"], float(entry["dot"] / norm) if norm else 0.0,
            100.0 * entry["agree"] / entry["pixels"] if entry["pixels"] and problem is None else None, all_zero,
            kind, None if kind is None else decision_basis(kind, entry["source"]), problem, entry["flat"],
            entry["step"], mismatched))
        if samples and entry["flat"] == samples and not outputs[-1].all_zero and not mismatched \
                and outputs[-1].sqnr_db >= MIN_OUTPUT_SQNR_DB:
            notes.append(f"output {name!r}: the float output is constant to int8 precision on every sample, so its "
                         "SQNR and agreement measure nothing; evaluate on real images (--eval DIR)")
    # a total order (no NaN: finite_pairs); at −∞ dB (non-finite mismatches) the most mismatches first
    layers.sort(key=lambda layer: (layer.sqnr_db, -layer.nonfinite_mismatches))
    mismatched = [layer for layer in layers if layer.nonfinite_mismatches]
    if mismatched:
        notes.append("int8 and float disagree on NaN/±Inf values (SQNR −∞ dB) in: " + ", ".join(
            f"{layer.producer} ({layer.nonfinite_mismatches:,} positions of {layer.tensor!r})" for layer in mismatched)
            + " (they held none on the calibration data, so they were quantized; calibrating with data that "
            "produces them keeps such a tensor in float)")
    report = AccuracyReport(samples, outputs, layers, notes=notes)
    if confusion_float is not None and outputs[0].decision_problem is None:
        report.miou_float = confusion_float.miou()
        report.miou_int8 = confusion_int8.miou()
    return report
