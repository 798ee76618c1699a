"""Human-readable numbers that always carry their unit (e.g. "717.27 M MACs")."""

from __future__ import annotations

_PREFIXES = ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K"))


def human(count: int | float, unit: str = "", digits: int = 2) -> str:
    """717270000 → '717.27 M' (+ unit); values under 1000 are printed as integers."""
    for factor, prefix in _PREFIXES:
        if abs(count) >= factor:
            text = f"{count / factor:.{digits}f} {prefix}"
            return f"{text}{unit}" if unit else text.rstrip()
    text = f"{int(count)}"
    return f"{text} {unit}".rstrip() if unit else text


def human_bytes(count: int) -> str:
    """Binary-prefixed bytes: 1536 → '1.50 KiB'."""
    for factor, prefix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if count >= factor:
            return f"{count / factor:.2f} {prefix}"
    return f"{count} B"


def dims(shape) -> str:
    return "x".join(str(dim) for dim in shape) if shape is not None else "?"
