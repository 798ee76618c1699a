"""How float and int8 values are compared where either is NaN or ±Inf (segcost.quant.accuracy, mixed_variants).

Non-finite values (an attention mask's -inf on evaluation data that calibration never
produced, an int8 value that overflowed) follow one rule, `finite_pairs`: a position where
the float and the dequantized int8 value are both finite is compared as usual; one where
both hold the same value (the same infinity) or both NaN agrees exactly (error 0, as in the
extended reals: −∞ − (−∞) is no error for a mask the int8 model kept); every other position
is a *non-finite mismatch* — its error |f − q| is infinite, so the tensor's SQNR is
10·log10(S/∞) = −∞ dB, whatever the finite positions say (a metric never flatters). IEEE
arithmetic would give NaN there (∞ − ∞, 0·∞), which orders nothing: Python's sort with a NaN
key leaves the list unsorted. −∞ orders totally: such layers rank first (worst), by their
mismatch count. The JSON report holds `null` for that −∞ SQNR (strict JSON has no infinity)
beside `nonfinite_mismatches` > 0, which tells it from `null` = exact match (+∞).
"""

from __future__ import annotations

import numpy as np

__all__ = ["finite_pairs"]


def finite_pairs(reference: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(reference, value) at the positions where both are finite, and the number of non-finite mismatches.

    `reference` (float model) and `value` (int8 model) have the same shape; the positions
    neither compared nor counted are those where both hold the same infinity or both NaN
    (exact agreement). Rule and reasoning: module docstring.
    """
    finite = np.isfinite(reference) & np.isfinite(value)
    if finite.all():
        return reference, value, 0
    rest_f, rest_q = reference[~finite], value[~finite]
    agree = (rest_f == rest_q) | (np.isnan(rest_f) & np.isnan(rest_q))
    return reference[finite], value[finite], int(agree.size - np.count_nonzero(agree))
