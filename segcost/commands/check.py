"""`segcost check`, `segcost baseline save`, `segcost diff`: the CI guardrail commands."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import click

from segcost.commands.options import DECIMAL, INTEGER, OptionNeedsCommand, count_type
from segcost.errors import InputError

_LIMIT_OPTIONS = (
    ("--max-gmacs", "max_gmacs", DECIMAL, "Fail when the model has more GMACs."),
    ("--max-params-m", "max_params_m", DECIMAL, "Fail when the model has more million parameters."),
    ("--max-layer-gmacs", "max_layer_gmacs", DECIMAL, "Fail when any one layer has more GMACs."),
    ("--max-unsupported-ops", "max_unsupported_ops", INTEGER, "Fail when more ops have no cost rule."),
    ("--max-latency-ms", "max_latency_ms", DECIMAL, "Fail when the estimated latency on --target is higher."),
)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _builtin_budget(input_shapes: tuple[str, ...]):
    """The budget of the built-in DeepLabV3Lite, the model every command analyzes without MODEL."""
    from segcost.budget.budgets import BUILTIN_SOURCE, ModelBudget
    from segcost.commands.inputs import builtin_label
    from segcost.fileio.numbers import parse_input_shapes

    shapes = parse_input_shapes(input_shapes)
    label = builtin_label(next(iter(shapes.values()))) if shapes else builtin_label((1, 3, 512, 512))
    return ModelBudget(name=label, source=BUILTIN_SOURCE, input_shapes=list(input_shapes))


def _from_command_line(result, cli_limits: Collection[str], baseline: str | None) -> None:
    """Outcomes whose limit was given as an option point at the command line, not at a budgets file;
    the budgets file's path is made relative to the repository (GitHub annotations need that)."""
    for outcome in result.outcomes:
        if outcome.budget in cli_limits or (baseline and outcome.budget.startswith("baseline_")):
            flag = "--baseline/--max-increase" if outcome.budget.startswith("baseline_") else _flag(outcome.budget)
            outcome.file = None
            outcome.detail = f"{outcome.detail} (limit from the command line: {flag})".strip()
        elif outcome.file:
            outcome.file = _repo_relative(outcome.file)


def _repo_relative(path: str) -> str:
    """`path` relative to $GITHUB_WORKSPACE (else the working directory) when it lies inside it."""
    import os

    root = Path(os.environ.get("GITHUB_WORKSPACE") or Path.cwd()).resolve()
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return path


def _limit_options(function):
    for flag, name, kind, text in reversed(_LIMIT_OPTIONS):
        function = click.option(flag, name, type=kind, help=text)(function)
    return function


def _budgets(models: tuple[str, ...], config: str | None, input_shapes: tuple[str, ...], limits: dict,
             target: str | None, verify: bool, rules: str, allow_partial: bool = False):
    from segcost.budget.budgets import ModelBudget, find_config, load_budgets
    from segcost.fileio.paths import check_path_text

    config_path = find_config(config)
    configured = load_budgets(config_path) if config_path else []
    if not models:
        budgets = configured or [_builtin_budget(input_shapes)]   # like every command: the built-in model
    else:
        by_source = {Path(budget.source).resolve(): budget for budget in configured if budget.zoo_name is None}
        budgets = []
        for model in models:
            budget = by_source.get(Path(model).resolve()) or ModelBudget(name=model, source=model)
            budgets.append(budget)
    for budget in budgets:
        for key, value in limits.items():
            setattr(budget, key, value)
        if input_shapes:
            budget.input_shapes = list(input_shapes)
        if target is not None:   # --target '' is refused, not left to the budgets file's target
            budget.target = check_path_text(target, "--target")
        if verify:
            budget.verify, budget.rules = True, rules
        if allow_partial:
            budget.allow_partial = True
        if budget.max_latency_ms is not None and not budget.target:
            raise InputError(f"{budget.name}: --max-latency-ms needs --target")
    # the needs table cannot see the budgets file
    if target is not None and all(budget.max_latency_ms is None for budget in budgets):
        raise InputError("--target is used by latency budgets only: give --max-latency-ms (or max_latency_ms in "
                         "the budgets file)")
    return budgets


CHECK_NEEDS = {"--rules": "--verify", "--max-increase": "--baseline"}
"""Which check options need which (without it the option would be ignored)."""


@click.command("check", cls=OptionNeedsCommand, needs=CHECK_NEEDS)
@click.argument("models", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--config", type=click.Path(dir_okay=False), help="Budgets file (default: ./segcost.toml or "
              "[tool.segcost] in ./pyproject.toml).")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=1x3xHxW", help="Static input shape.")
@_limit_options
@click.option("--target", help="Target profile for --max-latency-ms (e.g. tda4vm).")
@click.option("--verify", is_flag=True, help="Fail on any verifier finding.")
@click.option("--rules", default="current", show_default=True, help="Verifier rule set.")
@click.option("--allow-partial", is_flag=True, help="Let MAC/latency budgets pass on a count that is only a lower "
              "bound (unsupported ops, layers without shape, loops counted as one trip); by default they fail.")
@click.option("--baseline", type=click.Path(dir_okay=False), help="Baseline JSON from `segcost baseline save`.")
@click.option("--max-increase", metavar="PCT", help="With --baseline: allowed growth of MACs and params "
              "[default: 0%].")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "junit", "github", "md"]), default="table",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report to FILE.")
@click.pass_context
def check(ctx: click.Context, models, config, input_shapes, max_gmacs, max_params_m, max_layer_gmacs,
          max_unsupported_ops, max_latency_ms, target, verify, rules, allow_partial, baseline, max_increase, fmt,
          output) -> None:
    """Fail the build (exit 1) when a model exceeds its MAC/params/latency budget or regresses.

    A MAC, layer-MAC, latency or baseline-MAC budget also fails when the count is partial (ops
    with no cost rule, layers without a static shape, loops counted as one trip), unless
    --allow-partial (allow_partial = true in the budgets file) is given.
    """
    from segcost.budget.budgets import given_limits
    from segcost.budget.evaluate import (
        CheckResult,
        check_model,
        compare_baseline,
        parse_percent,
        read_baseline,
    )
    from segcost.reports.check import render_check

    limits = given_limits(_flag, max_gmacs=max_gmacs, max_params_m=max_params_m, max_layer_gmacs=max_layer_gmacs,
                          max_unsupported_ops=max_unsupported_ops, max_latency_ms=max_latency_ms)
    budgets = _budgets(models, config, input_shapes, limits, target, verify, rules, allow_partial)
    allowed_growth = parse_percent("0%" if max_increase is None else max_increase)
    plan = _plan(output, budgets, config, baseline=baseline)
    previous = read_baseline(baseline) if baseline is not None else None   # --baseline '' is refused there
    checks = [check_model(budget) for budget in budgets]
    result = CheckResult(checks)
    if previous is not None:
        result.baseline_outcomes = compare_baseline(checks, previous, allowed_growth, baseline)
    if not result.outcomes:
        raise InputError("no limits to check: set max_gmacs, max_params_m, ... or --baseline")
    _from_command_line(result, set(limits), baseline)
    _write(render_check(result, fmt), output, plan)
    ctx.exit(0 if result.passed else 1)


@click.group("baseline")
def baseline_group() -> None:
    """Snapshots of model costs for regression checks (`segcost check --baseline`)."""


@baseline_group.command("save")
@click.argument("models", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--config", type=click.Path(dir_okay=False), help="Budgets file listing the models.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=1x3xHxW", help="Static input shape.")
@click.option("-o", "--output", default="segcost-baseline.json", show_default=True, type=click.Path(dir_okay=False))
def baseline_save(models, config, input_shapes, output) -> None:
    """Write the current MACs/params (totals and per layer) of each model to a baseline JSON."""
    from segcost.budget.evaluate import baseline_snapshot, check_baseline, check_model
    from segcost.fileio.writes import json_text

    # the models as `check` reads them: a budgets file's entries (its input shapes) for MODELS too, and
    # --input-shape over every entry (both used to be ignored here: a baseline check then compared to)
    budgets = _budgets(models, config, input_shapes, {}, None, False, "current")
    plan = _plan(output, budgets, config)
    for budget in budgets:  # a baseline records costs only; limits are the check's business
        budget.verify = False
        budget.max_latency_ms = None
    snapshot = check_baseline(baseline_snapshot([check_model(budget) for budget in budgets]), output)  # loads back
    plan.write(output, json_text(snapshot, sort_keys=True))
    click.echo(f"wrote {output} ({len(budgets)} models)")


@click.command("diff")
@click.argument("model_a", type=click.Path(dir_okay=False))
@click.argument("model_b", type=click.Path(dir_okay=False))
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=1x3xHxW", help="Static input shape.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "md"]), default="table", show_default=True)
@click.option("--top", type=count_type(1), help="Only the N largest changes.")
def diff(model_a, model_b, input_shapes, fmt, top) -> None:
    """Per-layer and total cost changes from MODEL_A to MODEL_B (layers matched by name, then structure)."""
    from segcost.analyzer import analyze
    from segcost.budget.diff import diff_analyses
    from segcost.fileio.numbers import parse_input_shapes
    from segcost.frontends import onnx as onnx_frontend
    from segcost.reports.check import render_diff

    shapes = parse_input_shapes(input_shapes)
    result = diff_analyses(analyze(onnx_frontend.load(model_a, shapes)), analyze(onnx_frontend.load(model_b, shapes)))
    click.echo(render_diff(result, Path(model_a).name, Path(model_b).name, fmt, top), nl=False)


def _plan(output: str | None, budgets, config: str | None, **inputs):
    """-o checked against every file the command reads (models, budgets file, baseline, profiles)."""
    from segcost.fileio.plan import OutputPlan

    return OutputPlan.check({"-o": output}, {
        "MODEL": [budget.source for budget in budgets if budget.zoo_name is None],
        "the budgets file": [config, *{budget.config_file for budget in budgets if budget.config_file}],
        "--target": [budget.target for budget in budgets if budget.target],
        **{f"--{name}": value for name, value in inputs.items()}})


def _write(text: str, output: str | None, plan) -> None:
    if output:
        plan.write(output, text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


COMMANDS = [check, baseline_group, diff]
