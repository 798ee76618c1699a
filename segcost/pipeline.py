"""`segcost optimize`: run the pass pipeline, check numerics in onnxruntime, export.

Numerical check: the original and the optimized model run in onnxruntime (CPU, same
session options) on the same seeded standard-normal input; every output must satisfy
max|a − b| ≤ atol + rtol·max|a| with atol = 1e-4 and rtol = max(1e-5, 16·eps), eps the
machine epsilon of the output's dtype: 1e-5 for float32 (eps 1.2e-7), 0.0156 for float16
(eps 2^-10: folding BN into float16 weights rounds each weight to 11 bits, and one float16
ulp of an output near 1 is already 0.00098), 0.125 for bfloat16. The relative part scales
with the output's magnitude, not each element's: folding BN re-associates the arithmetic,
and in a deep net with large activations an element near zero can be the difference of
large terms. A wrong fold changes whole channels and fails by orders of magnitude. A
failure names `--no-check`, which skips the check.

Memory bound: before anything runs, every tensor the check computes must have a static
inferred shape, none may exceed MAX_CHECK_TENSOR_BYTES (1 GiB), and the peak of live
activations over the graph's order (analyzer.memory, liveness with buffers freed after
their last use, as onnxruntime's planner does) may not exceed MAX_CHECK_PEAK_BYTES
(2 GiB). Subgraphs (If/Loop/Scan) and model-local functions hide their intermediates
from that count, so a graph with them is refused too. A refusal says so and names the
tensor; ``--no-check`` skips the check. The bound is segcost.targets.run_bounds, the gate in
front of every onnxruntime run of a user's model: int8 calibration passes it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import onnx

from segcost.analyzer import AnalysisResult, analyze
from segcost.analyzer import count_macs as count_macs_of
from segcost.errors import InputError, SegcostError, ShapeError
from segcost.ir import Graph
from segcost.ir.feeds import MAX_CHECK_ELEMENTS, random_feeds  # noqa: F401 - optimize's public names
from segcost.ir.opchecks import check_graph as check_attributes
from segcost.ir.runtime import open_session
from segcost.passes import (
    DEFAULT_PIPELINE,
    PASSES,
    Finding,
    FoldConstantsPass,
    PassManager,
    PassRecord,
    VerifyGroupedConvPass,
)
from segcost.shapes import symbolic_inputs
from segcost.targets.run_bounds import MAX_RUN_PEAK_BYTES, MAX_RUN_TENSOR_BYTES, bound_run_memory

ATOL = 1e-4
MAX_CHECK_TENSOR_BYTES = MAX_RUN_TENSOR_BYTES   # any one tensor the numeric check computes
MAX_CHECK_PEAK_BYTES = MAX_RUN_PEAK_BYTES       # live activations at once, by liveness over the graph's order
NO_CHECK_HINT = "; use --no-check to skip the numerical check"
RTOL = 1e-5
EPS_FACTOR = 16                    # relative tolerance floor in machine epsilons of the output's dtype


def relative_tolerance(dtype: np.dtype) -> float:
    """rtol of the numeric check for an output of `dtype`: max(RTOL, EPS_FACTOR·eps(dtype)) (module docstring)."""
    return max(RTOL, EPS_FACTOR * float(np.finfo(dtype).eps))


class NumericsError(SegcostError):
    """The optimized graph does not compute what the original computes."""


@dataclass
class OptimizeResult:
    graph: Graph
    before: AnalysisResult
    after: AnalysisResult
    records: list[PassRecord]
    findings: list[Finding] = field(default_factory=list)
    max_abs_diff: float | None = None
    model: onnx.ModelProto | None = None           # what gets written: fused float, or int8 QDQ
    quantization: Any = None                        # segcost.quant.quantize.QuantizeResult
    accuracy: Any = None                            # segcost.quant.accuracy.AccuracyReport
    int8_after: AnalysisResult | None = None
    speed: Any = None                               # segcost.quant.speed.SpeedReport
    mixed: Any = None                               # segcost.quant.mixed.MixedResult (--mixed)
    notes: list[str] = field(default_factory=list)  # about the written model, one line each (the CLI prints them)


def build_pipeline(names: list[str] | None = None, after_each=None, count_macs: bool = True,
                   written: bool = True) -> PassManager:
    """The PassManager running `names` (None: DEFAULT_PIPELINE) to a fixed point. `written=False`: the graph is
    costed, never written, and constant folding may grow it (FoldConstantsPass(max_growth=None); see target_pipeline).

    Raises:
        InputError: an unknown pass name, or an empty list (not read as "the default").
    """
    names = list(DEFAULT_PIPELINE if names is None else names)
    if not names:   # an empty list is not "the default": say so (the CLI's --passes '' is "unknown pass ''")
        raise InputError("passes is empty: name the passes to run, or give None for the whole pipeline")
    unknown = [name for name in names if name not in PASSES]
    if unknown:
        raise InputError(f"unknown pass {unknown[0]!r} (known: {', '.join(PASSES)})")
    steps = [FoldConstantsPass(max_growth=None) if not written and PASSES[name] is FoldConstantsPass
             else PASSES[name]() for name in names]
    return PassManager(steps, fixed_point=True, after_each=after_each, metric=count_macs_of if count_macs else None)


def static_view(graph: Graph, copy: bool = False) -> Graph:
    """`graph` itself, or — when only batch dims (axis 0) of its inputs are symbolic — a copy with them set to 1.

    The passes and the written model keep the symbolic batch; the analysis (exact MACs)
    needs numbers, and counts one sample. With `copy`, always a copy (the caller may change it).
    """
    from segcost.frontends.onnx import load_model, symbolic_inputs
    from segcost.ir.onnx_io import to_model

    symbolic = symbolic_inputs(graph)
    if not symbolic or any(axis != 0 for _, axis, _ in symbolic):
        # static, or symbolic beyond the batch: analyze() reports it
        return load_model(to_model(graph), label=graph.info.path) if copy else graph
    # only axis 0 is symbolic (checked above): with it set to 1 every dim is an int
    shapes = {name: cast(tuple[int, ...], (1, *(graph.shape(name) or ())[1:]))
              for name in {name for name, _, _ in symbolic}}
    return load_model(to_model(graph), shapes, label=graph.info.path)


def require_static_but_batch(graph: Graph) -> None:
    """Raise ShapeError naming the first input dim other than the batch that is not a number.

    The passes fold shape computations, the numeric check runs the model and the analysis
    counts exact MACs: all need H and W (and every other non-batch dim) as numbers. The
    message says what works for optimize — `--input-shape` with the sizes — and that a
    symbolic batch stays symbolic in the written model (analyze's symbolic formula is not an
    option for a command that writes a graph).
    """
    open_dims = [(name, axis, symbol) for name, axis, symbol in symbolic_inputs(graph) if axis != 0]
    if not open_dims:
        return
    name, axis, symbol = open_dims[0]
    shape = graph.shape(name)
    if shape is None or axis < 0:
        raise ShapeError(f"input {name!r} has no shape in the model; pass --input-shape {name}=1x3xHxW with "
                         "your sizes")

    def static(dim) -> bool:
        return isinstance(dim, int) and dim > 0

    def placeholder(index: int, dim) -> str:   # the file's symbol when short and readable, else H/W or D<axis>
        text = str(dim)
        if text.isidentifier() and len(text) <= 12:
            return text
        return {2: "H", 3: "W"}.get(index, f"D{index}") if len(shape) == 4 else f"D{index}"

    example = "x".join(str(dim) if static(dim) else "1" if index == 0 else placeholder(index, dim)
                       for index, dim in enumerate(shape))
    named = ", ".join(placeholder(index, dim) for index, dim in enumerate(shape) if index and not static(dim))
    symbol_text = f" {shape[0]!r}" if shape[0] else ""
    batch = "" if static(shape[0]) else f" (the batch dim{symbol_text} stays symbolic in the written model)"
    raise ShapeError(f"input {name!r} has symbolic dimension {symbol!r} at axis {axis}; optimize needs it as a "
                     f"number: pass --input-shape {name}={example} with numbers for {named}{batch}")


def optimize(graph: Graph, passes: list[str] | None = None, after_each=None, rules: str = "current",
             before_passes=None) -> OptimizeResult:
    """Analyze, run the pipeline (in place), verify, analyze again; `before_passes(graph)` runs in between.

    Raises:
        ShapeError: an input dim other than the batch is symbolic (require_static_but_batch).
    """
    require_static_but_batch(graph)
    static = static_view(graph)
    before = analyze(static)
    if before_passes is not None:
        before_passes(graph)
    # A symbolic batch: the passes run on the symbolic graph (so the written model keeps it);
    # their per-pass MAC deltas need numbers, so they are not counted there.
    result = build_pipeline(passes, after_each, count_macs=static is graph)(graph)
    findings = VerifyGroupedConvPass(rules=rules)(result.graph).findings
    return OptimizeResult(result.graph, before, analyze(static_view(result.graph)), result.records, findings)


def bound_check_memory(graph: Graph) -> int:
    """Peak activation bytes the numeric check needs; InputError when it cannot be bounded or is over the bounds.

    segcost.targets.run_bounds.bound_run_memory, the gate in front of every onnxruntime run of a
    user's model; here with the check's name and `--no-check` in its messages. Runs before
    onnxruntime sees the model.
    """
    return bound_run_memory(graph, "numeric check", NO_CHECK_HINT)


def run_onnxruntime(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Keep ORT from fusing on its own, so both graphs are executed as written.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = open_session(model, options)
    return session.run(None, feeds)


def compare_outputs(original: onnx.ModelProto, optimized: onnx.ModelProto, graph: Graph) -> float:
    """Max abs difference of all outputs; raises NumericsError beyond the documented tolerance."""
    feeds = random_feeds(original, graph)
    try:
        expected = run_onnxruntime(original, feeds)
    except Exception as error:  # noqa: BLE001 - the user's model may not run in ORT at all
        raise InputError(f"onnxruntime cannot run the original model ({type(error).__name__}); "
                         "use --no-check to skip the numerical check") from None
    actual = run_onnxruntime(optimized, feeds)
    worst = 0.0
    for index, (want, got) in enumerate(zip(expected, actual)):
        if want.shape != got.shape:
            raise NumericsError(f"output #{index}: shape {got.shape} after optimization, {want.shape} before")
        if want.size == 0 or not np.issubdtype(want.dtype, np.floating):
            if not np.array_equal(want, got):
                raise NumericsError(f"output #{index} differs after optimization")
            continue
        # NaN/±Inf compare by position and value (NaN − NaN is NaN, and NaN > limit is False: a fold
        # that made an output NaN passed); the tolerance applies to the finite elements
        finite = np.isfinite(want)
        if not np.array_equal(finite, np.isfinite(got)) or not np.array_equal(want[~finite], got[~finite],
                                                                                equal_nan=True):
            raise NumericsError(f"output #{index} ({want.dtype}) has NaN/±Inf in other places or of other signs "
                                "after optimization; --no-check skips this check")
        if not finite.any():
            continue
        a, b = want[finite].astype(np.float64), got[finite].astype(np.float64)
        diff = float(np.abs(a - b).max())
        worst = max(worst, diff)
        rtol = relative_tolerance(want.dtype)
        limit = ATOL + rtol * float(np.abs(a).max())
        if diff > limit:
            raise NumericsError(f"output #{index} ({want.dtype}) differs by up to {diff:.3g} after optimization "
                                f"(tolerance {limit:.3g} = {ATOL} + {rtol:.3g}·max|x|); if that is rounding you "
                                "accept, --no-check skips this check")
    return worst


def optimize_model(graph: Graph, passes: list[str] | None = None, rules: str = "current", check: bool = True,
                   after_each=None, int8=None, eval_data: str | None = None,
                   progress=None, eval_size: int | None = None, measure_runs: int | None = None,
                   mixed=None) -> OptimizeResult:
    """The whole `segcost optimize`: fuse and clean up, verify, check numerics, optionally quantize.

    `int8` is a QuantizeOptions (None: float output). Accuracy is measured on `eval_data`
    (default: the calibration source; the synthetic source's held-out split). The int8
    speed is predicted on the int8 target's profile; `measure_runs` also measures it in
    onnxruntime (segcost.quant.speed). `mixed` (a segcost.quant.mixed.MixedOptions) keeps
    layers in float where int8 loses speed or accuracy; the accuracy, speed and written
    model are then the mixed model's, `result.mixed` says what was kept and why.
    """
    from segcost.frontends.onnx import file_model
    from segcost.ir.onnx_io import to_model

    original = None

    def prepare_check(graph: Graph) -> None:
        # after the analysis (its errors name the input to fix), before any pass or onnxruntime run
        nonlocal original
        bound_check_memory(static_view(graph))  # a symbolic batch is bounded at batch 1
        # The reference is the file as onnxruntime itself parses it, not segcost's reading of
        # it: a loader bug (e.g. a payload attached to the wrong tensor) must fail the check.
        original = file_model(graph) or to_model(graph)

    result = optimize(graph, passes, after_each=after_each, rules=rules, before_passes=prepare_check if check else None)
    result.model = to_model(result.graph)
    try:
        onnx.checker.check_model(result.model)
    except onnx.checker.ValidationError as error:
        raise SegcostError(f"segcost wrote an invalid model (a segcost bug, not your model's; please report it): "
                           f"onnx.checker: {str(error).splitlines()[0]}") from None
    if check:
        assert original is not None, "prepare_check ran before the passes"
        result.max_abs_diff = compare_outputs(original, result.model, result.graph)
    if int8 is not None:
        from segcost.quant.accuracy import compare_models
        from segcost.quant.calibration import input_dtype, open_source
        from segcost.quant.footprint import int8_view
        from segcost.quant.mixed_cost import precision_costs
        from segcost.quant.quantize import quantize_graph, single_image_input
        from segcost.quant.speed import measure, speed_report

        if mixed is not None:
            mixed.validate()   # before minutes of calibration
        static_float = static_view(result.graph)
        bound_run_memory(static_float, "int8 calibration")   # calibration runs it in onnxruntime, --no-check or not
        quantized = _checked(quantize_graph(result.graph, int8, progress, float_model=result.model))
        static_int8 = static_view(quantized.graph)
        costs = precision_costs(result.graph, static_float, static_int8, int8.target)  # full int8
        float_units: list[str] = []
        # None is "not given"; an empty eval_data or a 0 eval_size is refused (open_source), not the calibration's
        evaluation = int8.calibration if eval_data is None else eval_data
        name, shape = single_image_input(result.graph, evaluation)
        source = open_source(evaluation, name, shape, int8.calib_size if eval_size is None else eval_size, int8.seed,
                             int8.mean, int8.std, split="val", dtype=input_dtype(result.graph, name))
        if mixed is not None:
            from dataclasses import replace

            from segcost.quant.mixed import plan_mixed

            result.mixed = plan_mixed(result.graph, static_float, static_int8, quantized, int8.target, mixed, costs)
            float_units = [layer.name for layer in result.mixed.kept]
            result.mixed.int8_outputs = compare_models(quantized.float_model, quantized.model, source,
                                                       per_layer=False).outputs
            if result.mixed.kept:
                excluded = (*int8.exclude_nodes, *result.mixed.exclude_nodes)
                quantized = _checked(quantize_graph(result.graph, replace(int8, exclude_nodes=excluded), progress,
                                                    float_model=result.model))
        result.quantization = quantized
        result.accuracy = compare_models(quantized.float_model, quantized.model, source)
        result.int8_after = analyze(int8_view(static_float, quantized.graph))
        result.speed = speed_report(costs, float_units)   # the written model: the one --mixed chose
        if measure_runs:
            feeds = next(iter(source)).feeds
            measure(result.speed, quantized.float_model, quantized.model, feeds, runs=measure_runs)
        result.model = quantized.model
    note = removed_inputs_note(graph, result.model)
    if note:
        result.notes.append(note)
    return result


NAMED_INPUTS = 10   # removed inputs named in the note; more are counted


def removed_inputs_note(graph: Graph, written: onnx.ModelProto) -> str | None:
    """The note for initializers the file also lists as graph inputs and `written` does not take; None if none.

    At IR >= 4 such an input is an overridable default (torch.onnx.export(keep_initializers_as_
    inputs=True) writes every weight so); onnxruntime then does not fold it. `optimize` is asked for a
    fused model, so segcost treats them as the constants they hold — BatchNorm is folded into the
    Conv weight, which is no longer the tensor the user could override — and the written model does
    not take them. Below IR 4 every initializer had to be an input (and onnxruntime treats them as
    constants): nothing to say.
    """
    from segcost.ir.onnx_io import IR_INITIALIZERS_NOT_INPUTS

    if graph.info.ir_version < IR_INITIALIZERS_NOT_INPUTS:
        return None
    taken = {value.name for value in written.graph.input}
    removed = [name for name in graph.info.initializer_inputs if name not in taken]
    if not removed:
        return None
    named = ", ".join(removed[:NAMED_INPUTS]) + (f" and {len(removed) - NAMED_INPUTS} more"
                                                 if len(removed) > NAMED_INPUTS else "")
    return (f"{len(removed)} graph input(s) that are also initializers (overridable defaults: {named}) were "
            "treated as constants, folded where a fusion applies, and are not inputs of the written model")


def _checked(quantized):
    """`quantized` (a QuantizeResult) after onnx.checker accepted its model; SegcostError otherwise."""
    try:
        onnx.checker.check_model(quantized.model)
    except onnx.checker.ValidationError as error:
        raise SegcostError(f"segcost wrote an invalid int8 model (a segcost bug, not your model's; please report "
                           f"it): onnx.checker: {str(error).splitlines()[0]}") from None
    return quantized


RUNTIME_PASSES: dict[str, tuple[str, ...]] = {"cpu": ("fuse-pad",)}
"""Profile name → the passes replaying rewrites its runtime makes itself before running a model.

cpu (onnxruntime): level-1 PadFusion folds a zero Pad into the Conv/AveragePool after it
(segcost.passes.fuse_pad), so neither the Pad kernel nor the layout reorders around it run.
tda4vm, am62a (TIDL): nothing — TI's operator table (edgeai-tidl-tools
docs/supported_ops_rts_versions.md, SDK 11.00) maps Pad to its own layer, TIDL_PadLayer, and
documents no merge into a convolution.
"""


def runtime_passes(target=None) -> tuple[str, ...]:
    """RUNTIME_PASSES of `target` (a profile name, .toml path or TargetProfile; None: none).

    A profile file is matched by the name it declares, so a profile `segcost calibrate` fitted
    from `cpu` keeps onnxruntime's rewrites. Raises InputError for an unknown profile.
    """
    if target is None:
        return ()
    from segcost.targets.profile_toml import load_profile

    return RUNTIME_PASSES.get(load_profile(target).name, ())


def target_pipeline(graph: Graph, target=None) -> Graph:
    """The graph as a deployment toolchain runs it: the default pipeline (constants folded,
    no-ops and dead nodes removed, BatchNorm folded, activations fused), then what `target`'s
    runtime rewrites itself (runtime_passes; None: nothing more). In place.

    Constant subgraphs fold here even where that grows the graph (a written model must not
    grow: `optimize`): the runtime folds them at session start — onnxruntime's ConstantFolding
    has no size check — so they cost nothing per inference and are not layers to verify."""
    return build_pipeline([*DEFAULT_PIPELINE, *runtime_passes(target)], written=False)(graph).graph


def verifier_findings(graph: Graph, rules: str = "current", fuse: bool = True) -> list[Finding]:
    """The findings of `segcost verify`: the one path behind `verify`, `check --verify`, `verify = true`
    and a sweep's "findings".

    Degenerate attributes are refused first (ir.opchecks, InputError); with `fuse` (the default,
    as `verify` does) the graph is folded and fused in place as a deployment toolchain runs it
    (target_pipeline), then VerifyGroupedConvPass checks it against the rule set `rules`.
    Before this path was shared, `check --verify` and the sweep verified the unfolded graph and
    reported findings `segcost verify` did not (torchvision LRASPP: 2 vs 0).
    """
    check_attributes(graph)
    return VerifyGroupedConvPass(rules=rules)(target_pipeline(graph) if fuse else graph).findings


def estimate_on_target(graph: Graph, target: str, fuse: bool = True):
    """Cost on `target`: the one path behind `analyze --target`, `check --max-latency-ms` and `cost`.

    With `fuse`, runs target_pipeline for the profile on the graph in place first (analyze the
    original before calling this): on `cpu` that includes onnxruntime's own Pad folding. The
    verifier's target findings come from the profile's own rule set on the graph that is
    costed, so the three commands agree to the digit.
    """
    from segcost.targets.cost_model import estimate, load_profile

    profile = load_profile(target)
    return estimate(target_pipeline(graph, profile) if fuse else graph, profile)
