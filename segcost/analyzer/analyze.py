"""Walk the IR in topological order, apply the cost rule of each node, sum exactly."""

from __future__ import annotations

from segcost.analyzer.control_flow import CONTROL_FLOW_OPS, UNBOUNDED, control_flow_cost
from segcost.analyzer.conventions import category_subtotals, split_flops
from segcost.analyzer.grouping import group_layers, module_scopes
from segcost.analyzer.layers import LayerSignature, LayerTable
from segcost.analyzer.memory import BufferSizes, node_buffer_sizes, peak_activation_bytes
from segcost.analyzer.registry import (
    COUNTED,
    SHAPE_UNKNOWN,
    UNSUPPORTED,
    ZERO_BY_CONVENTION,
    OpCost,
    OpView,
    Rule,
    is_pure_rule,
)
from segcost.analyzer.result import (
    AnalysisResult,
    ControlFlowCost,
    Coverage,
    ModelSummary,
    TensorSummary,
    Totals,
)
from segcost.analyzer.rules import find_rule
from segcost.analyzer.tables import tensor_tables
from segcost.analyzer.weights import SPECIAL_OPS, Root, constant_size, forwarded_constants, is_weight
from segcost.errors import InputError, ShapeError
from segcost.ir import Graph, Node, Shape
from segcost.shapes import symbolic_inputs
from segcost.shapes.export_size import with_size_change_advice


def analyze(graph: Graph) -> AnalysisResult:
    """Per-layer and total MACs, flops, params and bytes of `graph` (exact ints).

    If/Loop/Scan layers carry the MACs of their subgraphs (analyzer.control_flow); how each
    was counted is in `control_flow`. Raises ShapeError for symbolic graph inputs and
    InputError for malformed nodes.
    """
    _require_static_inputs(graph)
    walk = _Walk(graph)
    layers = walk.layers
    column = layers.column   # lists of ints, read from the table's columns: no LayerCost is made
    totals = Totals(
        macs=sum(column("macs")), flops=sum(column("flops")), params=sum(column("params")),
        weight_bytes=sum(column("weight_bytes")), activation_bytes=sum(column("activation_bytes")),
        peak_activation_bytes=peak_activation_bytes(graph, walk.scheduled, walk.nbytes, walk.constants,
                                                    walk.buffer_sizes),
        nodes=len(layers),
    )
    totals.gmacs = round(totals.macs / 1e9, 4)
    warnings = walk.warnings
    shape_note = graph.info.metadata_props.get("segcost.shape_inference")
    if shape_note:
        warnings.insert(0, f"shape inference ran non-strict ({shape_note})")
    warnings[:0] = [conflict.message() for conflict in graph.info.shape_conflicts]
    calls = graph.info.inlined_function_calls
    if calls:
        warnings.insert(0, f"{calls} call{'s' if calls != 1 else ''} of model-local functions inlined "
                           "(onnx.inliner); their layers are counted as the functions' nodes")
    return AnalysisResult(
        model=_model_summary(graph), totals=totals, coverage=walk.coverage, layers=layers,
        by_op_type=group_layers(layers, "op_type"), warnings=warnings, control_flow=walk.control_flow,
        scopes={key: scopes for key, node in graph.nodes.items()
                if node.metadata_props and (scopes := module_scopes(node.metadata_props))},
    )


class _Walk:
    """One pass over a graph's nodes in topological order, applying each node's cost rule.

    Used for the model and, recursively, for each If branch and Loop/Scan body; a
    subgraph's tensor table (`inherited`) passes down to the control flow nested in it.
    Constants in `outer_constants` are read from an enclosing graph and not counted as params.
    """

    def __init__(self, graph: Graph, inherited: dict | None = None,
                 outer_constants: frozenset[str] | set[str] = frozenset()):
        order = graph.topological_order()
        nodes = graph.nodes
        self.scheduled = [nodes[key] for key in order]
        self.constants = constants = set(graph.initializers)
        forwarders: dict[str, Node] = {}
        for key, node in zip(order, self.scheduled):
            if node.op_type in SPECIAL_OPS:   # one set lookup per node
                if node.op_type != "Constant" or node.domain:
                    forwarders[key] = node
                else:  # a sparse_value Constant (dense ones are lifted)
                    constants.update(node.outputs)
        # graph.shape() and the tensors' byte sizes as tables: each is read several times per node
        plain = not forwarders and len(constants) == len(graph.initializers) and "" not in constants
        shape_of, sizes, kinds = tensor_tables(graph, plain)
        plain = plain and bool(kinds)   # tensor_tables may find the graph's tensors unfit for kinds
        self.nbytes = nbytes = sizes.__getitem__   # 0 for a tensor of unknown size
        # Weights read through forwarders count at their first real consumer (analyzer.weights)
        forwarded, forwarding, quantization_params = forwarded_constants(graph, forwarders, constants)
        constants.update(forwarded)
        for tensor in forwarded:
            sizes[tensor] = 0   # a forwarded weight is no activation, for the forwarder's row and the peak
        is_constant = constants.__contains__
        dtype_of = graph.dtype
        stored_weights = graph.info.stored_weights   # integer-stored float weights (quant.footprint): params
        rules: dict[tuple[str, str], tuple[Rule | None, bool]] = {}
        # A pure rule's result (and what is derived from it below) per distinct node signature:
        # a large graph repeats a few layer shapes many times (registry.cost_rule's `pure`).
        outcomes: dict[tuple, _Outcome] = {}
        self.layers = table = LayerTable()
        append_name, append_inputs, append_outputs = table.names.append, table.inputs.append, table.outputs.append
        append_params, append_weight_bytes = table.params.append, table.weight_bytes.append
        append_activation_bytes, append_signature = table.activation_bytes.append, table.signature_index.append
        # per scheduled node, the bytes of each input (and subgraph read) and output, None for a constant or
        # an omitted tensor: what peak_activation_bytes reads (for a node of a known kinds key, no look-up)
        self.buffer_sizes: list[BufferSizes] = []
        append_sizes = self.buffer_sizes.append
        # LayerSignature -> its index in table.signatures: equal outcomes of any rule share one
        self._signature_ids: dict[LayerSignature, int] = {}
        self.coverage = coverage = Coverage()
        self.warnings: list[str] = []
        self.control_flow: list[ControlFlowCost] = []
        seen_constants: set[str] = set(outer_constants)
        seen_constants.update(quantization_params)   # never params (weights.QUANTIZATION_PARAMETERS)
        initializers, initializer_of = graph.initializers, graph.initializers.get
        kind_of = kinds.get
        # A pure rule's layer by (rule, attributes, the kinds of its tensors): a kind stands for a tensor's
        # (shape, dtype, being a weight) (analyzer.tables), so a node's activation bytes, and whether it
        # reads a weight, are the same for every node of its key. Only for `plain` graphs: every
        # constant an initializer, no forwarders, no tensor named "".
        # ({the layer's outcome, activation bytes, (input position, params, bytes) of each weight read,
        # buffer sizes})
        layers_of_kinds: dict[tuple, tuple[_Outcome, int, tuple[tuple[int, int, int], ...], BufferSizes]] = {}
        counted = 0   # layers COUNTED through layers_of_kinds, added to coverage.counted after the walk
        for key, node in zip(order, self.scheduled):
            inputs, outputs, op_type, domain = node.inputs, node.outputs, node.op_type, node.domain
            rule_key = (domain, op_type)
            found = rules.get(rule_key)
            if found is None:
                found = rules[rule_key] = (find_rule(domain, op_type), is_pure_rule(domain, op_type))
            kinds_key: tuple | None = None
            if plain and found[1] and not node.implicit_inputs:
                attrs = node.attrs   # most nodes of a large graph have none: no repr call for those
                kinds_key = (rule_key, repr(attrs) if attrs else "{}", tuple(map(kind_of, inputs)),
                             tuple(map(kind_of, outputs)))
                known = layers_of_kinds.get(kinds_key)
                if known is not None:
                    (cost, formula_differs, signature_index), activation_bytes, weights, buffers = known
                    status = cost.status
                    if status == COUNTED:
                        counted += 1
                    else:
                        _record_status(coverage, status, op_type, key)
                    if formula_differs is not None:
                        self.warnings.append(f"{key}: onnx shape inference gives {list(formula_differs)}, the "
                                             f"{op_type} formula {list(cost.output_shape or ())}; the formula is used")
                    params = weight_bytes = 0
                    for position, size, stored in weights:   # a weight counts once, at its first consumer
                        tensor = inputs[position]
                        if tensor not in seen_constants:
                            seen_constants.add(tensor)
                            params += size
                            weight_bytes += stored
                    append_name(key)
                    append_inputs(tuple(inputs))
                    append_outputs(tuple(outputs))
                    append_params(params)
                    append_weight_bytes(weight_bytes)
                    append_activation_bytes(activation_bytes)
                    append_signature(signature_index)
                    append_sizes(buffers)
                    continue
            # map over dict methods: no Python frame per tensor ("" -- an omitted input -- has no shape)
            input_shapes = tuple(map(shape_of, inputs))
            output_shapes = tuple(map(shape_of, outputs))
            constant_inputs = tuple(map(is_constant, inputs))
            rule, pure = found
            outcome_key: tuple | None = None
            entry: _Outcome | None = None
            if pure and not node.implicit_inputs:
                # repr tells 1 from 1.0 and "a" from b"a": equal reprs of attribute dicts are equal values
                # which inputs are given: all of them unless one is omitted ("")
                outcome_key = (rule_key, repr(node.attrs), input_shapes, output_shapes, constant_inputs,
                             "" in inputs and tuple(map(bool, inputs)))
                entry = outcomes.get(outcome_key)
            subgraph_params = subgraph_weight_bytes = 0
            if entry is None:
                view = OpView(key, node, input_shapes, output_shapes, constant_inputs, graph)
                try:
                    if not domain and op_type in CONTROL_FLOW_OPS:
                        cost, subgraph_params, subgraph_weight_bytes = self._control_flow(graph, key, node,
                                                                                          inherited or {})
                    else:
                        cost = rule(view) if rule is not None else _UNSUPPORTED
                except ShapeError as error:   # a misfit after --input-shape changed a fixed size: say so
                    raise ShapeError(with_size_change_advice(graph, node.inputs, str(error))) from None
                except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError, OverflowError) as error:
                    # Rules trust the ONNX spec's attribute types and arities; a file that breaks them
                    # is bad input, reported for the node rather than as a crash.
                    raise InputError(f"node {key!r} ({op_type}): malformed attributes or inputs "
                                     f"({type(error).__name__}: {error})") from None
                entry = self._outcome(cost, view.output_shape(0), input_shapes, op_type, domain)
                if outcome_key is not None:
                    outcomes[outcome_key] = entry
            cost, formula_differs, signature_index = entry
            status = cost.status
            if status == COUNTED:
                coverage.counted += 1
            else:
                _record_status(coverage, status, op_type, key)
            if formula_differs is not None:
                self.warnings.append(f"{key}: onnx shape inference gives {list(formula_differs)}, the "
                                     f"{op_type} formula {list(cost.output_shape or ())}; the formula is used")
            params = weight_bytes = activation_bytes = 0
            read = node.all_inputs if node.implicit_inputs else inputs   # + subgraphs' outer reads
            for position, tensor in enumerate(read):
                if tensor in constants:
                    # a weight counts once, at its first consumer that reads it as a weight (weights.is_weight)
                    if tensor in seen_constants or key in forwarding:
                        continue   # a forwarder's constants count where the forwarded value is used
                    role = position if position < len(inputs) else None   # None: read by a subgraph
                    if tensor in forwarded:
                        read_type = dtype_of(tensor)
                        for root, always in forwarded[tensor]:
                            if root not in seen_constants and (always or root in stored_weights or is_weight(
                                    domain, op_type, role, read_type or dtype_of(root))):
                                seen_constants.add(root)
                                root_params, root_bytes = constant_size(root, initializer_of(root),
                                                                         shape_of, nbytes)
                                params += root_params
                                weight_bytes += root_bytes
                        continue
                    init = initializer_of(tensor)
                    if tensor not in stored_weights and not is_weight(
                            domain, op_type, role, dtype_of(tensor) if init is None else init.dtype):
                        continue
                    seen_constants.add(tensor)
                    if init is not None:
                        params += init.size
                        weight_bytes += init.nbytes
                    else:  # a (sparse) Constant node's output
                        const_params, const_bytes = constant_size(tensor, None, shape_of, nbytes)
                        params += const_params
                        weight_bytes += const_bytes
                elif tensor:
                    activation_bytes += nbytes(tensor)
            for tensor in outputs:
                if tensor:
                    activation_bytes += nbytes(tensor)
            append_name(key)
            append_inputs(tuple(inputs))
            append_outputs(tuple(outputs))
            append_params(params + subgraph_params)
            append_weight_bytes(weight_bytes + subgraph_weight_bytes)
            append_activation_bytes(activation_bytes)
            append_signature(signature_index)
            buffers = node_buffer_sizes(node, nbytes, constants)
            append_sizes(buffers)
            if kinds_key is not None and not (not domain and op_type in CONTROL_FLOW_OPS):
                # every constant is an initializer here (`plain`), its kind telling its shape and dtype
                layers_of_kinds[kinds_key] = (entry, activation_bytes, tuple(
                    (position, initializers[tensor].size, initializers[tensor].nbytes)
                    for position, tensor in enumerate(inputs) if constant_inputs[position] and (
                        tensor in stored_weights or is_weight(domain, op_type, position, initializers[tensor].dtype))),
                    buffers)
        coverage.counted += counted

        if forwarding:
            self._count_unread(graph, order, forwarding, forwarded, seen_constants, shape_of, nbytes)

    def _count_unread(self, graph: Graph, order: list[str], forwarding: dict[str, str],
                      forwarded: dict[str, tuple[Root, ...]], seen: set[str], shape_of, nbytes) -> None:
        """Weights forwarded to no reader: counted at their (first) forwarder, as without forwarding."""
        unread = [(key, output) for key, output in forwarding.items() if output not in seen]
        if not unread:
            return
        position = {key: index for index, key in enumerate(order)}
        params, weight_bytes = self.layers.params, self.layers.weight_bytes
        initializer_of = graph.initializers.get
        for key, output in unread:
            index = position[key]
            op_type = graph.nodes[key].op_type   # a standard forwarder, reading the value as its data input
            for root, always in forwarded[output]:
                if root not in seen and (always or root in graph.info.stored_weights
                                         or is_weight("", op_type, 0, graph.dtype(root))):
                    seen.add(root)
                    root_params, root_bytes = constant_size(root, initializer_of(root), shape_of, nbytes)
                    params[index] += root_params
                    weight_bytes[index] += root_bytes

    def _outcome(self, cost: OpCost, inferred_shape: tuple[int, ...] | None, input_shapes: tuple[Shape | None, ...],
                 op_type: str, domain: str) -> _Outcome:
        """What a node's cost gives its layer (see _Outcome); the same for every node of a pure rule's signature."""
        output_shape = inferred_shape if cost.output_shape is None else cost.output_shape
        differs = (inferred_shape if cost.output_shape is not None and inferred_shape is not None
                   and tuple(cost.output_shape) != tuple(inferred_shape) else None)
        macs, kernel, stride = cost.macs, cost.kernel, cost.stride
        flops = 2 * macs + cost.flops
        # the rule says which of its flops are bias adds and which are other categories' work (conventions)
        by_category = split_flops(op_type, domain, cost.flops, cost.bias_flops, cost.category_flops)
        bias_flops = dict(by_category).get("bias", 0)
        signature = LayerSignature(
            op_type, cost.kind, cost.group, None if kernel is None else tuple(kernel),
            None if stride is None else tuple(stride),
            tuple([None if shape is None else tuple(shape) for shape in input_shapes]),
            None if output_shape is None else tuple(output_shape), macs, flops, bias_flops, by_category, cost.status,
            domain)
        signatures = self.layers.signatures
        # Equal signatures share one entry, but only when their numbers are ints: 1 == 1.0 == True in
        # Python, and the reports would show the first one's type for all of them.
        if (type(macs) is type(flops) is type(bias_flops) is int and (cost.group is None or type(cost.group) is int)
                and all(type(value) is int for _, value in by_category)):
            index = self._signature_ids.setdefault(signature, len(signatures))
            if index == len(signatures):
                signatures.append(signature)
        else:
            index = len(signatures)
            signatures.append(signature)
        return cost, differs, index

    def _control_flow(self, graph: Graph, key: str, node, inherited: dict) -> tuple[OpCost, int, int]:
        """(cost, the subgraphs' own params, their weight bytes) of an If/Loop/Scan layer."""
        entry = control_flow_cost(graph, key, node, _analyze_body, inherited, self.warnings)
        self.control_flow.append(entry)
        # the subgraphs' flops include their 2·macs; OpCost.flops holds the rest, split by category as theirs is
        parts = entry.flops_by_category
        return OpCost(macs=entry.macs, flops=entry.flops - 2 * entry.macs,
                      status=UNBOUNDED if entry.unbounded else COUNTED, bias_flops=parts.get("bias", 0),
                      category_flops=tuple((name, value) for name, value in parts.items() if name != "bias")
                      ), entry.params, entry.weight_bytes


def _analyze_body(body: Graph, inherited: dict, outer_constants: set[str]):
    walk = _Walk(body, inherited, outer_constants)
    unsupported = walk.coverage.unsupported + walk.coverage.shape_unknown
    column = walk.layers.column
    return (sum(column("macs")), sum(column("flops")), sum(column("params")), sum(column("weight_bytes")),
            len(walk.layers), unsupported, walk.warnings,
            {name: flops for name, flops in category_subtotals(walk.layers).items() if flops})


_UNSUPPORTED = OpCost(status=UNSUPPORTED)
# What a layer takes from its rule's cost: (cost, the inferred output shape when the rule's formula
# gives another one, the index of its LayerSignature in the walk's LayerTable)
_Outcome = tuple[OpCost, tuple[int, ...] | None, int]


def _record_status(coverage: Coverage, status: str, op_type: str, key: str) -> None:
    if status == COUNTED:
        coverage.counted += 1
    elif status == ZERO_BY_CONVENTION:
        coverage.zero_by_convention += 1
    elif status == SHAPE_UNKNOWN:
        coverage.shape_unknown.append(f"{op_type}:{key}")
    elif status == UNBOUNDED:
        coverage.counted += 1
        coverage.unbounded.append(f"{op_type}:{key}")
    else:
        coverage.unsupported.append(f"{op_type}:{key}")
        coverage.unknown_ops[op_type] = coverage.unknown_ops.get(op_type, 0) + 1


def _require_static_inputs(graph: Graph) -> None:
    symbolic = symbolic_inputs(graph)
    if not symbolic:
        return
    name, axis, symbol = symbolic[0]
    shape = graph.shape(name)
    if shape is None:
        raise ShapeError(f"input {name!r} has no shape in the model; pass --input-shape {name}=1x3xHxW")
    example = "x".join(str(dim) if isinstance(dim, int) and dim > 0 else "1" for dim in shape)
    what = "an unnamed dynamic dimension" if symbol == "?" else f"symbolic dimension {symbol!r}"
    raise ShapeError(f"input {name!r} has {what} at axis {axis}; "
                     f"pass --input-shape {name}={example} (with your sizes), or use `segcost analyze "
                     f"--symbolic` for MACs as a formula of it")


def _dtype_name(dtype: int) -> str:
    import onnx

    try:
        return onnx.TensorProto.DataType.Name(dtype).lower()
    except ValueError:
        return f"type{dtype}"


def _model_summary(graph: Graph) -> ModelSummary:
    def summary(name: str) -> TensorSummary:
        shape = graph.shape(name)
        return TensorSummary(name, list(shape) if shape is not None else None, _dtype_name(graph.dtype(name)))

    return ModelSummary(
        path=graph.info.path, opset=graph.info.opset,
        producer=" ".join(filter(None, [graph.info.producer_name, graph.info.producer_version])),
        inputs=[summary(name) for name in graph.inputs], outputs=[summary(name) for name in graph.outputs],
    )


# Op types whose rules can give MACs; everything else is 0 MACs by convention.
MAC_OP_TYPES = frozenset({"Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "FusedConv", "Gemm", "MatMul",
                          "MatMulInteger", "QLinearMatMul", "LSTM", "GRU", "RNN", "Einsum", "Attention",
                          "MultiHeadAttention", "GroupQueryAttention", "FusedGemm", "FusedMatMul", "QGemm",
                          "MatMulIntegerToFloat", "DynamicQuantizeMatMul"})


def count_macs(graph: Graph) -> int:
    """Total MACs only — what the PassManager records around each pass, without the full report.

    A graph with If/Loop/Scan is counted by the full walk, so that subgraph MACs agree with analyze().
    """
    total = 0
    for key, node in graph.nodes.items():
        if node.op_type in CONTROL_FLOW_OPS and not node.domain:
            return sum(_Walk(graph).layers.column("macs"))
        if node.op_type not in MAC_OP_TYPES:
            continue
        rule = find_rule(node.domain, node.op_type)
        if rule is None:
            continue
        view = OpView(key=key, node=node,
                      input_shapes=tuple(graph.shape(tensor) if tensor else None for tensor in node.inputs),
                      output_shapes=tuple(graph.shape(tensor) if tensor else None for tensor in node.outputs),
                      graph=graph)
        total += rule(view).macs
    return total
