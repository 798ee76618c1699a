"""Text tables for the human report formats (plain "simple" columns, or Markdown)."""

from __future__ import annotations


def plain_text(text) -> str:
    """`text` with every non-printable character (C0/C1 controls such as ESC, BEL, CR, newline; Unicode
    format characters such as bidi overrides; line/paragraph separators) written as a Python escape.

    Names in a model are untrusted: raw, an ESC sequence recolours a terminal, a newline adds a line
    that can look like segcost's own ``segcost: error:`` output, and a control character makes a JUnit
    file ill-formed XML (XML 1.0 forbids them). Every human or XML report passes model text through
    this once, at the rendering layer (text_table, markdown_cell, reports.check). Printable text,
    tab excepted, is returned unchanged.
    """
    text = "" if text is None else str(text)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else
                   (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}") for char in text)


# Characters that let a cell change a Markdown table or the page around it (a layer name comes from
# the model file, which is untrusted: a "|" adds columns, a newline ends the row, "![x](url)" embeds
# an image in a pull-request comment). Backslash-escaped, as GitHub's table syntax documents.
_MARKDOWN_SPECIAL = str.maketrans({char: "\\" + char for char in "\\|[]!<>`"} | {"\n": " ", "\r": " "})


def markdown_cell(cell) -> str:
    """A text cell made inert for a Markdown table: structure and link/image/HTML syntax escaped."""
    return plain_text(cell).translate(_MARKDOWN_SPECIAL)


def markdown_rows(rows: list[list]) -> list[list[str]]:
    """`rows` with every cell through markdown_cell."""
    return [[markdown_cell(cell) for cell in row] for row in rows]


def text_table(rows: list[list], headers: list[str], markdown: bool = False) -> str:
    """tabulate's "github" (markdown) or "simple" table of text cells (numbers are not parsed).

    Why partly hand-written: tabulate inspects every cell's type and width in Python, 4 s
    for a 100k-layer table. With disable_numparse, every cell is text and a "simple" table
    is left-aligned columns of stripped cells, each at least its header + 2 wide, joined by
    two spaces, with no trailing spaces; a "github" table has the same columns between
    "| " ... " | " ... " |" and a "|---|" rule of width + 2. Those layouts are written here
    when every cell is printable ASCII (no escape sequences, wide or multi-line text, which
    tabulate measures specially). Tests compare both with tabulate on many tables. Markdown
    cells are escaped first (markdown_cell), and every cell's control characters (plain_text).
    """
    if markdown:
        rows, headers = markdown_rows(rows), [markdown_cell(header) for header in headers]
    texts = [[plain_text(cell) for cell in row] for row in rows]   # tabulate prints None as ""
    joined = "".join(map("".join, texts))
    if not (joined.isascii() and joined.isprintable()):
        from tabulate import (
            tabulate,  # only the human formats need it; keeps JSON/CSV start-up small
        )

        return tabulate(texts, headers=headers, tablefmt="github" if markdown else "simple", disable_numparse=True)
    cells = [[text.strip() for text in row] for row in texts]
    columns = list(zip(*cells)) or [()] * len(headers)
    widths = [max(len(header) + 2, max(map(len, column), default=0)) for header, column in zip(headers, columns)]
    if markdown:
        line = ("| " + " | ".join(f"{{:<{width}}}" for width in widths) + " |").format
        return "\n".join([line(*headers), "|" + "|".join("-" * (width + 2) for width in widths) + "|",
                          *(line(*row) for row in cells)])
    line = "  ".join(f"{{:<{width}}}" for width in widths).format
    return "\n".join([line(*headers).rstrip(), "  ".join("-" * width for width in widths),
                      *(line(*row).rstrip() for row in cells)])
