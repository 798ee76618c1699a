"""The one way segcost writes CSV: every text cell escaped against spreadsheet formula injection.

A layer name, a sweep's model name or a dataset label is untrusted text. A spreadsheet that opens
the CSV runs a cell starting with `=`, `+`, `-` or `@` as a formula (`=HYPERLINK("http://…")`,
`=cmd|' /C calc'!A0`), and a leading tab or carriage return hides such a start from simple checks.
Following the OWASP "CSV Injection" guidance (owasp.org/www-community/attacks/CSV_Injection), a
text cell that starts with one of those characters (or their fullwidth forms, which some
spreadsheets fold to ASCII) gets a leading single quote, which spreadsheets show as text and do
not evaluate; the csv module quotes embedded quotes, separators and newlines. A carriage return
inside text becomes a newline: with the "\n" line ends segcost writes, the csv module would leave
a lone CR unquoted, and a spreadsheet starts a new row (and so a new first cell) there. Numbers
(int, float) are written as they are, so a negative delta stays a number.

The standard library's csv writers do the quoting; this module only adds the escaping, and
tests/check/test_csv_injection.py checks that no other module creates a csv writer.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from typing import IO, Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")

__all__ = ["FORMULA_STARTS", "SafeDictWriter", "SafeWriter", "csv_cell"]


def csv_cell(value: Any) -> Any:
    """`value` for a CSV cell: None → "", text with CR line breaks as "\n" and, when it starts with a
    FORMULA_STARTS character, a leading "'"; anything else as it is."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = value.replace("\r\n", "\n").replace("\r", "\n")
        return "'" + value if value.startswith(FORMULA_STARTS) else value
    return value


class SafeWriter:
    """csv.writer whose rows have every cell passed through csv_cell."""

    def __init__(self, stream: IO[str], **options: Any) -> None:
        self._writer = csv.writer(stream, **options)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([csv_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


class SafeDictWriter(csv.DictWriter):
    """csv.DictWriter whose rows (and header) have every value passed through csv_cell."""

    def writerow(self, rowdict: Mapping[str, Any]) -> Any:
        return super().writerow({key: csv_cell(value) for key, value in rowdict.items()})

    def writerows(self, rowdicts: Iterable[Mapping[str, Any]]) -> None:
        for rowdict in rowdicts:
            self.writerow(rowdict)
