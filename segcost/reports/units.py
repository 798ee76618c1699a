"""Human-readable numbers that always carry their unit (e.g. "717.27 M MACs").

The prefixes run up to exa (10**18) and exbi (2**60): a 10**15-MAC video model prints as
"1.00 P", a 2 TiB activation total as "2.00 TiB". Beyond the largest prefix the mantissa
grows (1000.00 E). Exact integers stay in the JSON output; these strings are for people.
"""

from __future__ import annotations

_PREFIXES = ((10**18, "E"), (10**15, "P"), (10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K"))
_BINARY_PREFIXES = ((2**60, "EiB"), (2**50, "PiB"), (2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"))


def human(count: int | float, unit: str = "", digits: int = 2) -> str:
    """717270000 → '717.27 M' (+ unit); 10**15 → '1.00 P'; values under 1000 are printed as integers."""
    for factor, prefix in _PREFIXES:
        if abs(count) >= factor:
            text = f"{count / factor:.{digits}f} {prefix}"
            return f"{text}{unit}" if unit else text.rstrip()
    text = f"{int(count)}"
    return f"{text} {unit}".rstrip() if unit else text


def human_bytes(count: int) -> str:
    """Binary-prefixed bytes: 1536 → '1.50 KiB', 2**41 → '2.00 TiB'."""
    for factor, prefix in _BINARY_PREFIXES:
        if abs(count) >= factor:
            return f"{count / factor:.2f} {prefix}"
    return f"{count} B"


def points(value: float) -> str:
    """Percentage points with 2 decimals, never "-0.00": a drop that rounds to zero is "0.00" (0.001 → '0.00',
    -0.004 → '0.00', 1.234 → '1.23')."""
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def dims(shape) -> str:
    return "x".join(str(dim) for dim in shape) if shape is not None else "?"
