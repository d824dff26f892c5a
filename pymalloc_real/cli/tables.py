"""Tables that fit the terminal: the wings write Markdown (results files, the README
paste it); on a terminal too narrow for a table, each row becomes a block of
"column  value" lines instead, and long lines of prose around it are wrapped. ``--markdown`` (``markdown_argument``) keeps Markdown.
Output that is not a terminal (a pipe, a file) without COLUMNS set stays Markdown too:
there is no width to fit, and Markdown is what a file wants.
"""


import os
import sys
import textwrap

from .text import terminal_columns


def markdown_argument(parser):
    """Add ``--markdown`` to a subcommand that prints tables."""
    parser.add_argument("--markdown", action="store_true",
                        help="print tables as Markdown even when they are wider than the "
                             "terminal (by default a wide table is shown row by row)")


def fit(text, markdown=False, columns=None):
    """``text`` with each Markdown table wider than ``columns`` (default: the terminal's,
    when there is one) laid out row by row; unchanged with ``markdown``."""
    if markdown:
        return text
    if columns is None:
        if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
            return text
        columns = terminal_columns()
    out, block = [], []
    for line in text.split("\n"):
        if line.startswith("|"):
            block.append(line)
            continue
        out += _fitted(block, columns)
        block = []
        out += _wrapped(line, columns)
    out += _fitted(block, columns)
    return "\n".join(out)


def _fitted(lines, columns):
    if not lines or max(len(line) for line in lines) <= columns:
        return lines
    rows = [_cells(line) for line in lines]
    if len(rows) < 2 or not all(set(cell) <= set(":- ") for cell in rows[1]):
        return lines                    # not a table with a header: leave it alone
    header, body = rows[0], rows[2:]
    label = min(max(len(name) for name in header[1:]), max(columns - 12, columns // 2))
    out = []
    for row in body:
        if out:
            out.append("")
        out.append(textwrap.shorten(f"{header[0]}: {row[0]}" if header[0] else row[0],
                                    columns, placeholder="..."))
        for name, value in zip(header[1:], row[1:]):
            out.append(textwrap.fill(value or "-", columns, break_on_hyphens=False,
                                     initial_indent=f"  {name:<{label}}  ",
                                     subsequent_indent=" " * (label + 4)))
    return out


def _wrapped(line, columns):
    """A line of prose wrapped to ``columns``; a list item's lines under its text."""
    if len(line) <= columns:
        return [line]
    body = line.lstrip()
    indent = line[:len(line) - len(body)]
    rest = indent + ("  " if body.startswith(("- ", "* ")) else "")
    return textwrap.wrap(body, columns, initial_indent=indent, subsequent_indent=rest,
                         break_on_hyphens=False) or [line]


def _cells(line):
    """The cells of a Markdown table row (no escaped pipes in our tables)."""
    return [cell.strip() for cell in line.strip().strip("|").split("|")]
