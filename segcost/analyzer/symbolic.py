"""MACs as a formula of a model's symbolic input dims (DESIGN: "MACs become a formula").

Why probing rather than symbolic shape algebra: every cost rule would need a symbolic twin,
and strided convs floor-divide, so MACs are only a polynomial on a lattice of sizes. On the
multiples of `multiple` (32 covers every stride-32 network; a batch dim steps by 1) the MACs
of a conv/gemm network are a polynomial of low degree in each dim: (a·H + b)(c·W + d) summed
over layers, times N. segcost analyzes the model at a grid of such sizes, interpolates the
polynomial exactly (Fractions, no rounding), and checks it at sizes beyond the grid (5, 8
and 16 steps); a model whose MACs differ there from the polynomial (attention over H·W
tokens at degree 2, a stride larger than the probes) is an error. A layer that changes
only beyond 16 steps would go unseen: the formula is exact for what was checked.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from math import prod

from segcost.errors import InputError, SegcostError


@dataclass
class Symbol:
    name: str                          # the dim's name in the model (or input[axis] when unnamed)
    places: list[tuple[str, int]]      # (input, axis) pairs that carry it
    step: int                          # probe sizes are multiples of it


@dataclass
class SymbolicMacs:
    symbols: list[Symbol]
    terms: dict[tuple[int, ...], Fraction]   # exponents (one per symbol) → coefficient, zero terms left out
    probes: int

    def evaluate(self, values: dict[str, int]) -> Fraction:
        return sum((coefficient * prod(values[symbol.name] ** power for symbol, power in zip(self.symbols, exponents))
                    for exponents, coefficient in self.terms.items()), Fraction(0))

    def formula(self) -> str:
        if not self.terms:
            return "0"
        parts = []
        for exponents, coefficient in sorted(self.terms.items(), key=lambda item: (-sum(item[0]), item[0])):
            factors = [symbol.name if power == 1 else f"{symbol.name}^{power}"
                       for symbol, power in zip(self.symbols, exponents) if power]
            number = str(coefficient.numerator) if coefficient.denominator == 1 else \
                f"({coefficient.numerator}/{coefficient.denominator})"
            parts.append("·".join([number, *factors]) if factors else number)
        return " + ".join(parts).replace("+ -", "- ")

    def valid_for(self) -> str:
        return ", ".join(f"{symbol.name} a multiple of {symbol.step}" if symbol.step > 1 else f"{symbol.name} ≥ 1"
                         for symbol in self.symbols)

    def to_dict(self) -> dict:
        return {"formula": self.formula(), "valid_for": self.valid_for(), "probes": self.probes,
                "symbols": [{"name": symbol.name, "inputs": [f"{name}[{axis}]" for name, axis in symbol.places],
                             "step": symbol.step} for symbol in self.symbols],
                "terms": [{"exponents": list(exponents), "coefficient": str(coefficient)}
                          for exponents, coefficient in self.terms.items()]}


def collect_symbols(found: list[tuple[str, int, str]], multiple: int) -> list[Symbol]:
    """Group the (input, axis, symbol) triples of frontends.onnx.symbolic_inputs by symbol name."""
    symbols: dict[str, Symbol] = {}
    for name, axis, symbol in found:
        if axis < 0:
            raise InputError(f"input {name!r} has no shape in the model: pass --input-shape")
        key = symbol if symbol not in ("", "?", "None") else f"{name}[{axis}]"
        entry = symbols.setdefault(key, Symbol(key, [], 1 if axis == 0 else multiple))
        entry.places.append((name, axis))
        if axis != 0:
            entry.step = multiple
    return list(symbols.values())


def symbolic_macs(macs_at: Callable[[dict[str, int]], int], symbols: list[Symbol], degree: int = 2) -> SymbolicMacs:
    """Interpolate MACs (exact ints from `macs_at(values by symbol name)`) as a polynomial of `degree` per symbol."""
    if not symbols:
        raise InputError("the model has no symbolic input dimension")
    macs_at = _reporting_sizes(macs_at)
    if (degree + 1) ** len(symbols) > 256:
        raise InputError(f"{len(symbols)} symbolic dims need {(degree + 1) ** len(symbols)} probes; "
                         "analyze with fixed sizes (--input-shape) instead")
    points = [[symbol.step * (index + 1) for index in range(degree + 1)] for symbol in symbols]
    try:
        grid = {combination: Fraction(macs_at({symbol.name: value for symbol, value in zip(symbols, combination)}))
                for combination in itertools.product(*points)}
    except _ProbeFailed as failed:
        raise failed.explained(macs_at, symbols, degree) from None
    coefficients = _interpolate(grid, points, degree)
    terms = {exponents: value for exponents, value in coefficients.items() if value}
    # Checked beyond the grid, up to 16 steps: a layer that only changes size past the probes
    # (a stride-256 conv, a fixed-size pooling) shows up there.
    factors = sorted({degree + 3, 8, 16} - set(range(1, degree + 2)))
    result = SymbolicMacs(symbols, terms, len(grid) + len(factors))
    for factor in factors:
        check = {symbol.name: symbol.step * factor for symbol in symbols}
        try:
            measured = macs_at(check)
        except _ProbeFailed as failed:
            raise failed.explained(macs_at, symbols, degree) from None
        if result.evaluate(check) != measured:
            raise InputError(f"MACs are not a polynomial of degree <= {degree} in {', '.join(check)} on "
                             f"{result.valid_for()} (at {check} the fit gives {result.evaluate(check)}, the model "
                             f"{measured}): try a larger --multiple, or give fixed sizes with --input-shape")
    return result


class _ProbeFailed(Exception):
    """The model could not be analyzed at one probe's sizes."""

    def __init__(self, values: dict[str, int], error: SegcostError) -> None:
        super().__init__(str(error))
        self.values, self.error = values, error

    def explained(self, macs_at: Callable[[dict[str, int]], int], symbols: list[Symbol], degree: int) -> InputError:
        """The InputError to show: the sizes that failed, why, and a --multiple that works if one is found."""
        sizes = ", ".join(f"{name}={value}" for name, value in self.values.items())
        steps = sorted({symbol.step for symbol in symbols if symbol.step > 1})
        text = f"--symbolic probes sizes that are multiples of --multiple; the model cannot be analyzed at {sizes}: "
        text += str(self.error).splitlines()[0] if str(self.error) else type(self.error).__name__
        if not steps:
            return InputError(text)
        working = _working_multiple(macs_at, symbols, degree)
        if working is not None:
            return InputError(f"{text}; try --multiple {working} (the grid of multiples of {working} analyzes)")
        return InputError(f"{text}; no --multiple up to {steps[-1] * 8} works: give fixed sizes with --input-shape")


def _reporting_sizes(macs_at: Callable[[dict[str, int]], int]) -> Callable[[dict[str, int]], int]:
    def probe(values: dict[str, int]) -> int:
        try:
            return macs_at(values)
        except SegcostError as error:
            raise _ProbeFailed(values, error) from None
    return probe


def _working_multiple(macs_at: Callable[[dict[str, int]], int], symbols: list[Symbol], degree: int) -> int | None:
    """The smallest step·2^k (k = 1..3) at which the model analyzes at 1..degree+1 steps, or None.

    Models whose spatial sizes must divide a total stride (patch unfolding after stride 32,
    a window size) fail at some multiples of 32 only; doubling the step finds the stride.
    """
    step = max(symbol.step for symbol in symbols)
    for factor in (2, 4, 8):
        candidate = step * factor
        try:
            for index in range(1, degree + 2):
                macs_at({symbol.name: (candidate * index if symbol.step > 1 else index) for symbol in symbols})
        except _ProbeFailed:
            continue
        return candidate
    return None


def _interpolate(grid: dict[tuple[int, ...], Fraction], points: list[list[int]], degree: int
                 ) -> dict[tuple[int, ...], Fraction]:
    """Monomial coefficients (exponents → value) of the tensor-product polynomial through `grid`, exactly.

    The table is indexed per axis first by sample position, then, once that axis is solved,
    by power: solving an axis applies the inverse Vandermonde matrix of its sample sizes.
    """
    size = degree + 1
    table = {tuple(points[axis].index(value) for axis, value in enumerate(key)): value
             for key, value in grid.items()}
    for axis, values in enumerate(points):
        inverse = _vandermonde_inverse(values)
        table = {key: sum((inverse[key[axis]][sample] * table[key[:axis] + (sample,) + key[axis + 1:]]
                           for sample in range(size)), Fraction(0))
                 for key in itertools.product(range(size), repeat=len(points))}
    return table


def _vandermonde_inverse(values: list[int]) -> list[list[Fraction]]:
    """Inverse of V[i][j] = values[i]**j, as rows by power: coefficient[p] = Σ_i inverse[p][i] · f(values[i])."""
    size = len(values)
    matrix = [[Fraction(value) ** power for power in range(size)] + [Fraction(int(row == column))
                                                                      for column in range(size)]
              for row, value in enumerate(values)]
    for column in range(size):   # Gauss-Jordan elimination over the rationals
        pivot = next(row for row in range(column, size) if matrix[row][column] != 0)
        matrix[column], matrix[pivot] = matrix[pivot], matrix[column]
        lead = matrix[column][column]
        matrix[column] = [entry / lead for entry in matrix[column]]
        for row in range(size):
            if row != column and matrix[row][column] != 0:
                factor = matrix[row][column]
                matrix[row] = [entry - factor * pivot_entry for entry, pivot_entry in zip(matrix[row], matrix[column])]
    # rows of [I | V^-1]: V^-1[power][sample]
    return [row[size:] for row in matrix]
