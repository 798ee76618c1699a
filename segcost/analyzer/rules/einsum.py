"""Einsum: exact contraction MACs from the equation and the operand shapes.

For two operands the contraction visits every combination of the distinct subscripts once,
multiplying one element of each operand and accumulating into the output:
MACs = prod(size of each distinct letter), ellipsis dims counting as letters of their own.
MaskFormer's ``bqc,bchw->bqhw`` at b=1, q=100, c=256, h=w=96 is 100·256·96·96 =
235,929,600 MACs — what torch's FlopCounterMode counts for the bmm torch.einsum runs.

More than two operands are contracted pairwise from the left, as onnxruntime's Einsum
kernel does (onnxruntime/core/providers/cpu/math/einsum.cc): each step's MACs are the
product over the letters of its two operands, and its result keeps only the letters a
later operand or the output still needs. One operand is a transpose, diagonal or sum:
no MACs; flops = the elements visited (prod over its distinct letters) when letters are
summed away (a trace ``ii->`` adds its n diagonal elements), in --count category reduction.

Equation grammar (ONNX Einsum-12, numpy.einsum): terms of letters separated by commas,
optionally ``->`` and the output term; ``...`` stands for the leading (broadcast) dims;
a letter repeated in one term takes a diagonal; without ``->`` the output is the letters
that appear once, in alphabetical order, after the ellipsis dims. Sizes of one letter
must agree or be 1 (broadcast). An explicit output without ``...`` sums the ellipsis dims,
as torch.einsum does (numpy refuses such an equation).
"""

from __future__ import annotations

from math import prod

from segcost.analyzer.registry import SHAPE_UNKNOWN, OpCost, OpView, cost_rule
from segcost.errors import ShapeError
from segcost.ir import is_static_shape

ELLIPSIS = "..."


@cost_rule("Einsum")
def einsum(op: OpView) -> OpCost:
    """MACs = prod(sizes of all distinct letters) for two operands (pairwise from the left for more)."""
    equation = op.attr("equation")
    equation = equation.decode() if isinstance(equation, bytes) else equation
    if not isinstance(equation, str):
        raise ShapeError(f"{op.where}: attribute equation is missing")
    shapes = [op.input_shapes[index] if index < len(op.input_shapes) else None for index in range(len(op.node.inputs))]
    concrete = [shape for shape in shapes if is_static_shape(shape) and all(dim >= 0 for dim in shape)]
    if len(concrete) < len(shapes):
        return OpCost(status=SHAPE_UNKNOWN)
    macs, flops, output_shape = einsum_cost(equation, concrete, op.where)
    # a one-operand sum is a ReduceSum: category reduction
    return OpCost(macs=macs, flops=flops, kind="dense" if macs else "other", output_shape=output_shape,
                  category_flops=(("reduction", flops),) if flops else ())


def einsum_cost(equation: str, shapes: list[tuple[int, ...]],
                where: str = "Einsum") -> tuple[int, int, tuple[int, ...]]:
    """(MACs, flops, output shape) of `equation` over operands of `shapes`.

    Raises:
        ShapeError: a malformed equation, a term whose letters do not match its operand's
            rank, or letter sizes that neither agree nor broadcast; the message names `where`.
    """
    expanded, out_letters, sizes = _resolve(equation, shapes, where)
    output_shape = tuple(sizes.get(letter, 1) for letter in out_letters)
    if len(expanded) == 1:  # one add per element visited (a diagonal visits only its own)
        summed = set(expanded[0]) - set(out_letters)
        return 0, prod(sizes[letter] for letter in set(expanded[0])) if summed else 0, output_shape
    macs = sum(prod(sizes[letter] for letter in step) for step, _ in _pairwise(expanded, out_letters))
    return macs, 0, output_shape


def einsum_largest_intermediate(equation: str, shapes: list[tuple[int, ...]], where: str = "Einsum") -> int:
    """Elements of the largest partial result the pairwise contraction materializes (0 for one or two operands).

    onnxruntime's CPU Einsum (onnxruntime/core/providers/cpu/math/einsum_utils/
    einsum_typed_compute_processor.cc) contracts the operands from the left, and each step's result
    keeps the letters a later operand or the output still needs: 'ab,cd,bd->ac' keeps a, b, c, d
    after its first step, an a·b·c·d tensor that is in no shape of the graph.

    Raises:
        ShapeError: as einsum_cost.
    """
    expanded, out_letters, sizes = _resolve(equation, shapes, where)
    steps = list(_pairwise(expanded, out_letters))[:-1]   # the last step's result is the output itself
    return max((prod(sizes[letter] for letter in live) for _, live in steps), default=0)


def _pairwise(expanded: list[list[str]], out_letters: list[str]):
    """(letters of the step, letters its result keeps) for each pairwise step from the left."""
    live = set(expanded[0])
    for index in range(1, len(expanded)):
        step = live | set(expanded[index])
        later = set(out_letters).union(*expanded[index + 1:])
        live = {letter for letter in step if letter in later}
        yield step, live


def _resolve(equation: str, shapes: list[tuple[int, ...]],
             where: str) -> tuple[list[list[str]], list[str], dict[str, int]]:
    """(each operand's letters with '...' expanded, the output's letters, the size of each letter)."""
    terms, output = _parse(equation, len(shapes), where)
    sizes: dict[str, int] = {}
    expanded = []
    ellipsis_rank = max((len(shape) - (len(term) - 1) for term, shape in zip(terms, shapes) if ELLIPSIS in term),
                        default=0)
    for term, shape in zip(terms, shapes):
        letters = _expand(term, shape, ellipsis_rank, where, equation)
        for letter, size in zip(letters, shape):
            known = sizes.get(letter)
            if known is None or known == 1:
                sizes[letter] = size
            elif size not in (known, 1):
                raise ShapeError(f"{where}: equation {equation!r}: subscript {_show(letter)} is {known} in one "
                                 f"place and {size} in another")
        expanded.append(letters)
    ellipsis_letters = [f"{ELLIPSIS}{axis}" for axis in range(ellipsis_rank)]
    if output is None:  # implicit output: ellipsis dims, then letters that appear once, sorted
        counts: dict[str, int] = {}
        for term in terms:
            for letter in term:
                if letter != ELLIPSIS:
                    counts[letter] = counts.get(letter, 0) + 1
        out_letters = [*ellipsis_letters, *sorted(letter for letter, count in counts.items() if count == 1)]
    else:
        if ELLIPSIS in output:
            output = [*output[:output.index(ELLIPSIS)], *ellipsis_letters, *output[output.index(ELLIPSIS) + 1:]]
        for letter in output:
            if letter not in sizes and not letter.startswith(ELLIPSIS):
                raise ShapeError(f"{where}: equation {equation!r}: output subscript {letter!r} is in no input")
        if len(set(output)) != len(output):
            raise ShapeError(f"{where}: equation {equation!r}: an output subscript is repeated")
        out_letters = output
    return expanded, out_letters, sizes


def _parse(equation: str, count: int, where: str) -> tuple[list[list[str]], list[str] | None]:
    text = equation.replace(" ", "")
    left, arrow, right = text.partition("->")
    terms = [_letters(term, equation, where) for term in left.split(",")]
    if len(terms) != count:
        raise ShapeError(f"{where}: equation {equation!r} has {len(terms)} input terms for {count} inputs")
    return terms, _letters(right, equation, where) if arrow else None


def _letters(term: str, equation: str, where: str) -> list[str]:
    letters: list[str] = []
    rest = term
    while rest:
        if rest.startswith(ELLIPSIS):
            if ELLIPSIS in letters:
                raise ShapeError(f"{where}: equation {equation!r}: '...' twice in one term")
            letters.append(ELLIPSIS)
            rest = rest[3:]
        elif rest[0].isalpha() and rest[0].isascii():
            letters.append(rest[0])
            rest = rest[1:]
        else:
            raise ShapeError(f"{where}: equation {equation!r}: {rest[0]!r} is not a subscript letter")
    return letters


def _expand(term: list[str], shape: tuple[int, ...], ellipsis_rank: int, where: str, equation: str) -> list[str]:
    """The term's letters with '...' replaced by its (right-aligned) broadcast dims ...0, ...1, ..."""
    if ELLIPSIS not in term:
        if len(term) != len(shape):
            raise ShapeError(f"{where}: equation {equation!r}: term {''.join(term)!r} has {len(term)} subscripts "
                             f"for an input of rank {len(shape)}")
        return term
    own = len(shape) - (len(term) - 1)
    if own < 0:
        raise ShapeError(f"{where}: equation {equation!r}: term {''.join(term)!r} has more subscripts than "
                         f"the input's rank {len(shape)}")
    at = term.index(ELLIPSIS)
    dims = [f"{ELLIPSIS}{axis}" for axis in range(ellipsis_rank - own, ellipsis_rank)]
    return [*term[:at], *dims, *term[at + 1:]]


def _show(letter: str) -> str:
    return f"'...' dim {letter[3:]}" if letter.startswith(ELLIPSIS) else repr(letter)
