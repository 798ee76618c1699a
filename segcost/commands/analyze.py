"""`segcost analyze`: per-layer MACs, FLOPs, params and bytes, in every report format.

The command parses its options, calls the library and renders the result objects (segcost.reports).
"""

from __future__ import annotations

import click

from segcost.commands.inputs import is_torch_spec, load_cli_graph
from segcost.commands.options import OptionNeedsCommand, count_type, trust_model_code_option
from segcost.commands.output import check_outputs, emit, outlive
from segcost.errors import InputError
from segcost.fileio.writes import json_text

NEEDS = {"--multiple": "--symbolic",
         **dict.fromkeys(("--group-by", "--count", "--strict", "--target", "--factory-arg"), "no --symbolic"),
         "--by-op": ("no --symbolic", "no --group-by"),   # it is --group-by op_type: two keys, one report
         "--top": ("no --symbolic", "--format table or --format md or --format html")}
"""Which analyze options need which (--symbolic reports one formula; JSON and CSV list every layer)."""


@click.command(cls=OptionNeedsCommand, needs=NEEDS)
@click.argument("model", required=False, type=click.Path(dir_okay=True))
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=1x3xHxW",
              help="Static shape for a model input (repeatable); NAME may be omitted for one-input models.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "md", "html"]), default="table",
              show_default=True, help="Output format (html: self-contained report with charts).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report to FILE (atomically).")
@click.option("--top", type=count_type(1), help="Table: only the N layers with the most MACs.")
@click.option("--group-by", metavar="KEY", help="Subtotals instead of layers: op_type, kind, prefix or prefix:DEPTH "
              "(layer-name parts, e.g. encoder/decoder); they add up to the totals exactly.")
@click.option("--by-op", is_flag=True, help="Same as --group-by op_type.")
@click.option("--count", "counted", metavar="CATS", default="none", show_default=True,
              help="Also count these categories' elementary ops as MACs (other tools count some of them): "
                   "bias,bn,activation,pooling,resize,elementwise,reduction, all or none; totals.macs stays "
                   "conv/gemm. Every non-MAC flop is in one: bias is the MAC layers' bias adds; their other "
                   "work is the category of the op it stands for (a fused attention's softmax: activation; "
                   "a DeformConv's sampling: resize); reduction is Reduce*, ArgMax, TopK, CumSum.")
@click.option("--strict", is_flag=True, help="Exit 2 when any op is unsupported or any loop has no static trip "
              "count (names them).")
@click.option("--target", help="Add the estimated cost on a target (tda4vm, am62a, cpu or a profile .toml).")
@click.option("--symbolic", is_flag=True, help="MACs as an exact formula of the model's symbolic input dims "
              "(found by analyzing it at a grid of sizes and checked beyond it).")
@click.option("--multiple", default=32, show_default=True, type=count_type(1),
              help="With --symbolic: spatial dims are probed (and the formula holds) on multiples of this.")
@trust_model_code_option
@click.option("--factory-arg", "factory_args", multiple=True, metavar="KEY=VALUE",
              help="Keyword argument of a module:factory model (repeatable), VALUE a Python literal, "
                   "e.g. weights=None (no download).")
def analyze(model: str | None, input_shapes: tuple[str, ...], fmt: str, output: str | None, top: int | None,
            group_by: str | None, by_op: bool, counted: str, strict: bool, target: str | None, symbolic: bool,
            multiple: int, factory_args: tuple[str, ...]) -> None:
    """Per-layer MACs, FLOPs, params and bytes of MODEL (default: a built-in DeepLabV3Lite).

    MODEL is an .onnx file, or with segcost[torch] a TorchScript/ExportedProgram file
    (.pt/.pth/.pt2) or a `package.module:factory` spec (give --input-shape 1x3xHxW and
    --factory-arg KEY=VALUE for its keyword arguments).
    """
    from segcost.analyzer.conventions import parse_counted

    if group_by is not None:
        from segcost.analyzer.grouping import parse_group_by

        parse_group_by(group_by)   # a bad key is an error before the model is loaded
    categories = parse_counted(counted)
    _refuse_ignored_options(fmt, top, group_by or ("op_type" if by_op else None), categories, target, symbolic)
    check_outputs({"-o": output}, {"MODEL": model, "--target": target})
    if symbolic:
        from segcost.commands.symbolic import symbolic_report

        if model is None or is_torch_spec(model):
            raise InputError("--symbolic needs an .onnx file with symbolic input dims")
        emit(symbolic_report(model, input_shapes, fmt, multiple), output, protected=(model,))
        return
    graph, _ = load_cli_graph(model, input_shapes, factory_args)
    _report_analysis(graph, model, fmt, output, top, group_by or ("op_type" if by_op else None), strict, target,
                     categories)


def _refuse_ignored_options(fmt: str, top: int | None, group_by: str | None, categories: list[str],
                            target: str | None, symbolic: bool) -> None:
    """An option the chosen report would not use is an error, not silently dropped."""
    if symbolic:   # its options: NEEDS
        return
    ignored = []
    if fmt == "html":   # its stage charts take --group-by prefix[:DEPTH]; nothing else groups
        ignored = [name for name, given in (("--group-by/--by-op (other than prefix[:DEPTH])",
                                             group_by and not group_by.startswith("prefix")),
                                            ("--count", categories)) if given]
    elif fmt == "csv":
        ignored = [name for name, given in (("--count (CSV rows carry no totals)", categories),
                                            ("--target (use --format json)", target is not None)) if given]
    if group_by and top is not None:
        ignored.append("--top (with --group-by)")
    if ignored:
        raise InputError(f"--format {fmt} does not use {', '.join(ignored)}")


def _report_analysis(graph, model: str | None, fmt: str, output: str | None, top: int | None, group_by: str | None,
                     strict: bool, target: str | None, counted: list[str]) -> None:
    from segcost.analyzer import analyze as analyze_graph
    from segcost.reports.analysis import render

    result = analyze_graph(graph)
    result.counted = counted
    outlive(graph, result)   # not freed object by object as the command returns (100k nodes: ~50 ms)
    if strict and result.coverage.unsupported:
        raise InputError("unsupported ops (--strict): " + ", ".join(result.coverage.unsupported))
    if strict and result.coverage.unbounded:
        raise InputError("loops without a static trip count (--strict): " + ", ".join(result.coverage.unbounded))
    timeline = findings = None
    if fmt == "html":   # before the target estimate, which fuses the graph in place
        from segcost.analyzer.timeline import activation_timeline
        from segcost.passes import VerifyGroupedConvPass

        timeline = activation_timeline(graph)
        findings = VerifyGroupedConvPass()(graph).findings
    if target is not None:   # --target '' is refused by the profile loader, not ignored
        from segcost.pipeline import estimate_on_target

        estimate = estimate_on_target(graph, target)   # one path with `cost` and `check --max-latency-ms`
    else:
        estimate = None
    if fmt == "html":
        from segcost.analyzer.grouping import parse_group_by
        from segcost.commands.html_report import html_extras
        from segcost.reports.html import render_html

        extras = html_extras(result, timeline, estimate, target, parse_group_by(group_by)[1] if group_by else 1)
        emit(render_html(result, findings, target=estimate, top=top or 40, extras=extras), output,
              protected=(model,))
        return
    if estimate is not None:
        from segcost.reports.target import render_cost

        if fmt == "json":
            document = result.to_dict()
            if group_by:
                from segcost.reports.analysis import groups_dict

                document["groups"] = groups_dict(result, group_by)
            document["target"] = estimate.to_dict()
            emit(json_text(document), output, protected=(model,))
        else:
            text = render(result, fmt, top=top, group_by=group_by)
            emit(text + "\n" + render_cost(estimate, "md" if fmt == "md" else "table", top or 10,
                                            graph.info.path or "model", layers=top), output, protected=(model,))
        return
    if fmt == "json":
        from segcost.reports.analysis import groups_dict, render_indented_json_chunks, render_json_chunks

        if group_by:   # indented throughout, as it always was; the layers written from the table
            emit(render_indented_json_chunks(result, {"groups": groups_dict(result, group_by)}), output,
                 protected=(model,))
        else:
            emit(render_json_chunks(result), output, protected=(model,))
        return
    emit(render(result, fmt, top=top, group_by=group_by), output, protected=(model,))


COMMANDS = [analyze]
