"""Assertions shared by the security tests."""

from __future__ import annotations


def one_error_line(code: int, err: str, *words: str) -> None:
    """Exit 2 with exactly one `segcost: error:` line on stderr that names every one of `words`."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("segcost: error:"), err
    for word in words:
        assert word in lines[0], (word, err)
