"""`segcost analyze --symbolic`: load the model at probe sizes and report the MAC formula."""

from __future__ import annotations

from segcost.errors import InputError
from segcost.fileio.numbers import parse_input_shapes
from segcost.fileio.writes import json_text


def symbolic_report(model: str, input_shapes: tuple[str, ...], fmt: str, multiple: int) -> str:
    """`analyze --symbolic`: the formula of MACs in the model's symbolic input dims, as text or JSON."""
    from segcost.analyzer import analyze as analyze_graph
    from segcost.analyzer.symbolic import collect_symbols, symbolic_macs
    from segcost.frontends import onnx as onnx_frontend

    if fmt not in ("table", "md", "json"):
        raise InputError("--symbolic writes --format table, md or json")
    build = onnx_frontend.opener(model)   # the file is read once for all probe sizes
    graph = build(parse_input_shapes(input_shapes))
    symbols = collect_symbols(onnx_frontend.symbolic_inputs(graph), multiple)
    symbol_at = {place: symbol.name for symbol in symbols for place in symbol.places}
    shapes = {name: list(graph.shape(name) or []) for name in graph.inputs}

    def macs_at(values: dict[str, int]) -> int:
        probe = {name: tuple(values[symbol_at[(name, axis)]] if (name, axis) in symbol_at else dim
                             for axis, dim in enumerate(shape)) for name, shape in shapes.items()}
        return analyze_graph(build(probe)).totals.macs

    result = symbolic_macs(macs_at, symbols)
    if fmt == "json":
        return json_text({"schema": "segcost.symbolic/1", "model": model, "symbolic_macs": result.to_dict()})
    bullet = "- " if fmt == "md" else ""
    places = "; ".join(f"{symbol.name} = " + ", ".join(f"{name}[{axis}]" for name, axis in symbol.places)
                       for symbol in symbols)
    return (f"{'## ' if fmt == 'md' else ''}segcost analyze --symbolic: {model}\n"
            f"{bullet}MACs = {result.formula()}\n"
            f"{bullet}exact for {result.valid_for()} (interpolated from a grid of analyses, checked at 5, 8 and "
            f"16 steps; {result.probes} analyses)\n{bullet}symbols: {places}\n")
