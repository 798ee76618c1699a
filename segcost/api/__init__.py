"""segcost's Python API: the CLI's commands as functions returning the result dataclasses it renders.

    import segcost
    result = segcost.analyze("model.onnx", (1, 3, 512, 512), target="tda4vm")
    result.totals.macs          # exact int
    result.to_pandas()          # one row per layer (needs pandas)

`model` is everywhere one of: a path (``.onnx``; with segcost[torch] a TorchScript file or
``package.module:factory``), an ``onnx.ModelProto``, a ``torch.nn.Module`` (give
`input_shape` or an example tensor), or None for the built-in DeepLabV3Lite.
`input_shape` is ``(1, 3, H, W)`` for a one-input model, ``{"name": (1, 3, H, W)}``,
``"name=1x3xHxW"`` or an example tensor. Errors are the `segcost.errors` classes the CLI
turns into exit codes: `InputError` (and `GraphError`, `ShapeError`) for bad input,
`segcost.pipeline.NumericsError` when a rewrite changes what the model computes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from segcost.api.results import Analysis, Check, Cost, Optimized, from_base
from segcost.commands.inputs import ShapeArg, load_graph
from segcost.errors import InputError

__all__ = ["Analysis", "Check", "Cost", "Optimized", "analyze", "check", "cost", "optimize", "quantize"]


def analyze(model: Any = None, input_shape: ShapeArg = None, *, count: str | Iterable[str] = "none",
            target: str | None = None, strict: bool = False, factory_args: Mapping[str, Any] | None = None,
            trust_model_code: bool = False) -> Analysis:
    """Per-layer MACs, FLOPs, params and bytes of `model`, as `segcost analyze` reports them.

    Args:
        model: see the module docstring (None: the built-in DeepLabV3Lite, 1x3x512x512).
        input_shape: static input shape(s); needed for symbolic dims and for a torch module.
        count: categories also counted as MACs in `macs_by_convention` ("bias,bn", ["bias"], "all",
            "none"); `totals.macs` stays conv/gemm MACs.
        target: a profile (tda4vm, am62a, cpu or a .toml path): adds `result.target`, the per-layer
            latency estimate of the graph as the target's toolchain runs it (BatchNorm folded).
        strict: raise InputError when any op has no cost rule.
        factory_args: keyword arguments of a ``package.module:factory`` model (e.g. ``{"weights": None}``).
        trust_model_code: allow a model path that runs code when loaded (a .pt2/.pt/.pth file or a
            ``package.module:factory`` spec), as the CLI's --trust-model-code; an nn.Module needs no flag.

    Returns:
        An `Analysis` (an `AnalysisResult`): exact int counts in `totals` and `layers`.

    Raises:
        InputError, GraphError, ShapeError: unreadable model, bad shape, unknown category or target.
    """
    from segcost.analyzer import analyze as analyze_graph
    from segcost.analyzer.conventions import parse_counted

    categories = parse_counted(count if isinstance(count, str) else ",".join(count))
    graph, _ = load_graph(model, input_shape, dict(factory_args or {}), trust_code=trust_model_code)
    result = from_base(Analysis, analyze_graph(graph))
    result.counted = categories
    if strict and result.coverage.unsupported:
        raise InputError("unsupported ops (strict): " + ", ".join(result.coverage.unsupported))
    if target is not None:   # target="" is refused by the profile loader, not ignored
        from segcost.passes import VerifyGroupedConvPass
        from segcost.pipeline import estimate_on_target

        result.findings = VerifyGroupedConvPass()(graph).findings
        result.target = estimate_on_target(graph, target)   # the CLI's path: fused, the profile's own rules
    return result


def cost(model: Any = None, input_shape: ShapeArg = None, *, target: str = "tda4vm", fuse: bool = True) -> Cost:
    """Per-layer cycles, ms, bound, utilisation and placement on `target`, as `segcost cost` reports them.

    Args:
        target: tda4vm, am62a, cpu or a profile .toml path.
        fuse: fold BatchNorm and mark fused activations first (what TIDL and onnxruntime do).

    Raises:
        InputError: unreadable model or unknown profile.
    """
    from segcost.targets.cost_model import estimate, load_profile

    profile = load_profile(target)
    graph, path = load_graph(model, input_shape)
    label = path or ("built-in DeepLabV3Lite" if model is None else graph.info.path)
    if fuse:
        from segcost.pipeline import target_pipeline

        graph = target_pipeline(graph, profile)   # the CLI's path: with what the profile's runtime rewrites
    return from_base(Cost, estimate(graph, profile), model=label)


def optimize(model: Any = None, input_shape: ShapeArg = None, *, passes: list[str] | None = None,
             rules: str = "current", check: bool = True, output: str | None = None) -> Optimized:
    """Fuse Conv-BN(-ReLU), clean up and verify, as `segcost optimize` does; `result.model` is the ONNX model.

    Args:
        passes: pass names (default: `segcost.passes.DEFAULT_PIPELINE`; `segcost.passes.PASSES` lists them all).
        rules: the verifier's target rule set (current, legacy).
        check: run original and optimized model in onnxruntime and compare outputs
            (max |a - b| <= 1e-4 + 1e-5 * max|a|).
        output: also write the optimized model there (atomically; never over the input file).

    Raises:
        InputError: bad model or pass name, or an empty `passes` list. NumericsError: the optimized outputs differ.
    """
    return _optimize(model, input_shape, passes, rules, check, output, None, None, None, None)


def quantize(model: Any = None, input_shape: ShapeArg = None, *, calibration: str = "synthetic",
             calib_size: int = 16, per_channel: bool = True, pow2_scales: bool = False, method: str = "minmax",
             target: str = "cpu", exclude_nodes: Iterable[str] = (), eval_data: str | None = None,
             eval_size: int | None = None, check: bool = True, output: str | None = None,
             progress: Callable[[int, int], None] | None = None, mixed: bool = False, min_sqnr_db: float = 30.0,
             max_float_layers: int = 8) -> Optimized:
    """Fuse, then quantize to an int8 QDQ model and measure its accuracy, as `segcost optimize --int8` does.

    Args:
        calibration: a folder of images/.npy, a .npy/.npz file, or "synthetic".
        target: "cpu" (u8 activations, fastest in onnxruntime) or "tda4vm" (symmetric, zero points 0).
        eval_data: data for the accuracy report (default: the calibration source's held-out split).
        progress: called with (done, total) per calibration sample.
        mixed: keep in float the layers where int8 is predicted slower on `target` and the most
            sensitive ones until the output SQNR on the calibration data reaches `min_sqnr_db`
            (dB), at most `max_float_layers` of them for accuracy (segcost.quant.mixed).
        Others: as the CLI options of the same names.

    Returns:
        An `Optimized` whose `accuracy` holds per-output errors, mIoU drop and per-layer SQNR;
        with `mixed`, `result.mixed` (a MixedResult) lists the layers kept in float and why.

    Raises:
        InputError: bad model, calibration data or option.
    """
    from segcost.quant.quantize import QuantizeOptions

    options = QuantizeOptions(calibration=calibration, calib_size=calib_size, per_channel=per_channel,
                              pow2_scales=pow2_scales, method=method, target=target,
                              exclude_nodes=tuple(exclude_nodes))
    mixed_options = None
    if mixed:
        from segcost.quant.mixed import MixedOptions

        mixed_options = MixedOptions(min_sqnr_db=min_sqnr_db, max_float_layers=max_float_layers)
        mixed_options.validate()
    return _optimize(model, input_shape, None, "current", check, output, options, eval_data, eval_size, progress,
                     mixed_options)


def _optimize(model, input_shape, passes, rules, check, output, int8, eval_data, eval_size, progress,
              mixed=None) -> Optimized:
    from segcost.commands.quiet import quiet_third_party
    from segcost.fileio.plan import OutputPlan
    from segcost.pipeline import optimize_model

    plan = OutputPlan.check({"output": output}, {"model": model if isinstance(model, (str, os.PathLike)) else None,
                                                 "eval_data": eval_data})
    graph, path = load_graph(model, input_shape, keep_symbolic_batch=True)
    with quiet_third_party():
        result = optimize_model(graph, passes, rules=rules, check=check, int8=int8, eval_data=eval_data,
                                eval_size=eval_size, progress=progress, mixed=mixed)
    optimized = from_base(Optimized, result, output=output)
    if output is not None and result.model is not None:
        plan.write(output, result.model.SerializeToString())
    return optimized


def check(model: Any = None, input_shape: ShapeArg = None, *, max_gmacs: float | None = None,
          max_params_m: float | None = None, max_layer_gmacs: float | None = None,
          max_unsupported_ops: int | None = None, max_latency_ms: float | None = None, target: str | None = None,
          verify: bool = False, rules: str | None = None, baseline: str | Mapping | None = None,
          max_increase: float | str = 0.0, name: str | None = None, allow_partial: bool = False) -> Check:
    """Evaluate budgets on `model`, as `segcost check` does; `result.passed` is False where the CLI exits 1.

    Args:
        max_*: limits (non-negative, finite); max_latency_ms needs `target`, and `target` is used only for it.
        verify: a verifier finding fails the check.
        rules: the verifier's rule table (default "current"); needs `verify`.
        baseline: a `segcost baseline save` JSON (path or its parsed dict); fails when MACs or params
            grew more than `max_increase` percent (2.0 or "2%").
        name: the model's name in the outcomes and the baseline (default: its path or label).
        allow_partial: let MAC/latency budgets pass on a partial count (unsupported ops, layers
            without shape, loops counted as one trip); by default they fail, as in the CLI.

    Raises:
        InputError: bad model, negative/NaN limit, no limit at all, max_increase without baseline, an
            argument the check would not use (as the CLI refuses it: `target` without max_latency_ms,
            `rules` without verify), an empty `target`, `rules` or `name` (never read as "not given").
    """
    from segcost.budget.budgets import ModelBudget, given_limits
    from segcost.budget.evaluate import (
        check_graph,
        compare_baseline,
        parse_percent,
        read_baseline,
    )
    from segcost.fileio.paths import check_path_text

    limits = given_limits(str, max_gmacs=max_gmacs, max_params_m=max_params_m, max_layer_gmacs=max_layer_gmacs,
                          max_unsupported_ops=max_unsupported_ops, max_latency_ms=max_latency_ms)
    increase = parse_percent(str(max_increase)) if isinstance(max_increase, str) else float(max_increase)
    if not math.isfinite(increase) or increase < 0:
        raise InputError(f"max_increase must be a non-negative percentage, got {max_increase!r}")
    if baseline is None and increase:
        raise InputError("max_increase needs a baseline")
    if target is not None:   # target="" is refused as the CLI's --target '' is, not taken for "no target"
        check_path_text(target, "target")
    if max_latency_ms is not None and target is None:
        raise InputError("max_latency_ms needs target")
    if target is not None and max_latency_ms is None:
        raise InputError("target is used only with max_latency_ms (a latency budget)")
    if rules is not None and not verify:
        raise InputError("rules needs verify=True")
    if name is not None and (not isinstance(name, str) or not name):   # as the budgets file's name = ""
        raise InputError(f"name must be a non-empty string, got {name!r}")
    graph, path = load_graph(model, input_shape)
    label = name if name is not None else path or graph.info.path or "model"
    budget = ModelBudget(name=label, source=path or label, target=target, verify=verify,
                         rules="current" if rules is None else rules, allow_partial=allow_partial)
    for key, value in limits.items():
        setattr(budget, key, value)
    result = Check([check_graph(budget, graph)])
    if baseline is not None:
        document = read_baseline(str(baseline)) if not isinstance(baseline, Mapping) else dict(baseline)
        label = "baseline" if isinstance(baseline, Mapping) else str(baseline)
        result.baseline_outcomes = compare_baseline(result.models, document, increase, label)
    if not result.outcomes:
        raise InputError("no limits to check: give max_gmacs=..., max_params_m=..., ... or baseline=...")
    return result
