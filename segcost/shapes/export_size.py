"""What a shape error says when `--input-shape` changed a size the model file declares.

A model traced at one size (legacy torch.onnx, a static dynamo export) can keep that size in
its constants: a Reshape target `[1, 4, 1024]`, or `[1, -1, 8, 8]` whose -1 then takes up a
batch or H·W change and hands a wrong shape on; Resize `sizes`. A network can also simply not
take a size, with nothing baked at all: a U-Net's skip Concat needs H, W multiples of its
total stride. Both fail somewhere downstream of the cause. The message therefore says the
size the model was exported for and the size given, names a constant that fixes a size
only when one is found upstream of the op that failed (walking producers from its inputs),
and advises a dynamic re-export only then, since without a baked size it would not help.
"""

from __future__ import annotations

from collections.abc import Iterable

from segcost.ir import Graph

# Producers walked back from an operand of the failing op, looking for the op whose constant fixed its size.
UPSTREAM_STEPS = 16


def baked_upstream(graph: Graph, tensor: str) -> str:
    """"output size of Resize 'r' [1, 7, 15, 25] was" when `tensor` comes (through up to UPSTREAM_STEPS
    producers, along each one's first input) from a Resize whose `sizes` input is a constant — what a traced
    `F.interpolate(size=x.shape[-2:])` becomes — or a Reshape whose target fixes sizes (see _reshape_fixes);
    else ""."""
    for _ in range(UPSTREAM_STEPS):
        key = graph.producer(tensor)
        if key is None:
            return ""
        node = graph.node(key)
        if node.domain in ("", "ai.onnx"):
            shape = graph.shape(node.outputs[0]) if node.outputs else None
            size = f" {list(shape)}" if shape else ""
            if node.op_type == "Resize" and len(node.inputs) > 3 and node.inputs[3] \
                    and _fixed_by_constant(graph, node.inputs[3]):
                return f"output size of Resize {key!r}{size} was"
            if node.op_type == "Reshape" and len(node.inputs) > 1 and node.inputs[1]:
                target = node.inputs[1]
                if _fixed_by_constant(graph, target):
                    return f"output size of Reshape {key!r}{size} was"
                if graph.is_constant(target) and _reshape_fixes(graph, target):
                    return (f"target {_values(graph, target)} of Reshape {key!r} (its -1 takes up the change, "
                            f"giving{size}) was")
        if not node.inputs or not node.inputs[0]:
            return ""
        tensor = node.inputs[0]
    return ""


def _fixed_by_constant(graph: Graph, tensor: str) -> bool:
    """`tensor` (a size or shape operand) is a constant, or a Concat with a constant part (a traced size:
    `[*x.shape[:2], 15, 25]`), whose values are sizes: a Reshape's -1 (inferred) or 0 (copied) fixes nothing."""
    if graph.is_constant(tensor):
        return _all_sizes(graph, tensor)
    key = graph.producer(tensor)
    node = graph.node(key) if key is not None else None
    parts = [name for name in node.inputs if name and graph.is_constant(name)] if node is not None \
        and node.op_type == "Concat" else []
    return bool(parts) and all(_all_sizes(graph, name) for name in parts)


def _all_sizes(graph: Graph, constant: str) -> bool:
    init = graph.initializers.get(constant)
    if init is None or init.size > 64:
        return init is not None
    return bool((init.array > 0).all())


def _reshape_fixes(graph: Graph, constant: str) -> bool:
    """A constant Reshape target with a -1 fixes sizes when another of its dims is a size above 1
    (`[1, -1, 8, 8]`: the 8×8 was the export's H×W), or when it fixes a batch of 1 (`[1, -1]`) and
    --input-shape changed the batch; a plain flatten `[1, -1]` at another H, W fixes nothing that matters."""
    init = graph.initializers.get(constant)
    if init is None or init.size > 64 or init.array.ndim > 1:
        return False
    dims = [int(dim) for dim in init.array.reshape(-1)]
    if -1 not in dims:
        return False
    return any(dim > 1 for dim in dims) or (bool(dims) and dims[0] == 1 and 0 in changed_axes(graph))


def _values(graph: Graph, constant: str) -> list[int]:
    return [int(dim) for dim in graph.initializers[constant].array.reshape(-1)]


def changed_axes(graph: Graph) -> set[int]:
    """The input axes whose size --input-shape changed from a size the file fixes (graph.info.exported_input_shapes)."""
    axes: set[int] = set()
    for name, shape in graph.info.exported_input_shapes.items():
        now = graph.shape(name)
        if shape is not None and now is not None and len(shape) == len(now):
            axes.update(axis for axis, (old, new) in enumerate(zip(shape, now))
                        if isinstance(old, int) and old > 0 and old != new)
    return axes


def export_size_note(graph: Graph | None) -> str:
    """"the model was exported for x=1x3x32x32 (given: x=1x3x64x64)" when --input-shape changed a size the
    file fixes (graph.info.exported_input_shapes), else "". Symbolic dims of the file are not compared."""
    if graph is None:
        return ""
    exported, given = [], []
    for name, shape in graph.info.exported_input_shapes.items():
        now = graph.shape(name)
        if shape is None or now is None or len(shape) != len(now):
            continue
        if any(isinstance(old, int) and old > 0 and old != new for old, new in zip(shape, now)):
            exported.append(f"{name}={'x'.join(str(dim) for dim in shape)}")
            given.append(f"{name}={'x'.join(str(dim) for dim in now)}")
    return f"the model was exported for {', '.join(exported)} (given: {', '.join(given)})" if exported else ""


def dynamic_axes_hint(graph: Graph | None) -> str:
    """"dynamic batch", "dynamic H/W" or "dynamic axes 0, 2": the axes --input-shape changed from the export's
    fixed sizes, as the re-export advice names them (a batch change asks for a dynamic batch, not H/W)."""
    if graph is None:
        return "dynamic axes"
    axes = changed_axes(graph)
    if axes == {0}:
        return "dynamic batch"
    if axes and axes <= {2, 3} and all(len(shape or ()) == 4 for shape in graph.info.exported_input_shapes.values()):
        return "dynamic H/W"
    return "dynamic axes " + ", ".join(map(str, sorted(axes))) if axes else "dynamic axes"


def baked_advice(graph: Graph, baked: str) -> str:
    """What to do about the constant `baked` ("target of Reshape 'r' was"): the export's input size when
    --input-shape changed a size the file fixes, else a general hint."""
    note = export_size_note(graph)
    if not note:
        return f"; the {baked} fixed when the model was exported: give the input shape it was exported for"
    return f"; {note}: the {baked} fixed for that size — give the export shape, or re-export with " \
           f"{dynamic_axes_hint(graph)}"


def size_change_advice(graph: Graph | None, tensors: Iterable[str]) -> str:
    """"; the model was exported for ... (given: ...): ..." for a shape error at an op reading `tensors` after
    --input-shape changed a size the file fixes, else "".

    Names the first constant found upstream of `tensors` that fixes a size (baked_upstream) and advises a
    dynamic re-export; without one it says that nothing baked was found and the network may not take
    the given size (e.g. H, W not multiples of its total stride).
    """
    if graph is None or not export_size_note(graph):
        return ""
    for tensor in tensors:
        baked = baked_upstream(graph, tensor) if tensor and not graph.is_constant(tensor) else ""
        if baked:
            return baked_advice(graph, baked)
    return (f"; {export_size_note(graph)}, and the network does not fit that size here; no size fixed at export "
            "(a Reshape target, Resize sizes) was found upstream, so the network itself likely does not take it "
            "(H, W may need to be multiples of its total stride): give the export shape or another size")


def with_size_change_advice(graph: Graph | None, tensors: Iterable[str], message: str) -> str:
    """`message` (a shape error at an op reading `tensors`) with size_change_advice, unless it says the export
    size already."""
    note = export_size_note(graph)
    return message if not note or note in message else message + size_change_advice(graph, tensors)
