"""Text from files made safe for a terminal: control and bidirectional-override characters escaped.

Class names, model names, hashes, sidecar fields and file names come from files anyone may craft. An
escape sequence in one would clear the screen or set the window title (OSC sequences pass even when
output is piped), a newline would forge a line of results, and a bidi override would reorder what is
shown. Every text view passes such values through ``printable``; JSON output is already safe.
"""

from __future__ import annotations

import unicodedata

# Unicode's explicit directional formatting characters (UAX #9): embeddings, overrides, isolates, marks.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def is_unsafe(character: str) -> bool:
    """A control character (C0, DEL, C1), a line or paragraph separator, or a bidi formatting character."""
    return character in _BIDI or unicodedata.category(character) in ("Cc", "Zl", "Zp")


def has_unsafe_characters(text: str) -> bool:
    """Whether ``text`` holds a character ``printable`` would escape (what a one-line name must not)."""
    return any(is_unsafe(character) for character in text)


def _escape(character: str) -> str:
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object) -> str:
    """``str(value)`` with every control (C0, DEL, C1, line and paragraph separators) and bidi character
    shown as an escape such as ``\\x1b`` or ``\\u202e``; everything else, accents and CJK included, as is."""
    text = str(value)
    return "".join(_escape(character) if is_unsafe(character) else character for character in text)


# How wide text views are. One rule for the bench table, `info` and `doctor`: COLUMNS when it is set
# (a terminal, a pipe or a file alike), else the terminal's width; a pipe or a file without COLUMNS
# gets each view at its natural width (one line per row, as a log or grep wants it).
NATURAL_WIDTH_CAP = 1000  # what "natural" may reach: a bound, not a layout


def columns_setting() -> int | None:
    """The COLUMNS environment variable as a positive width, or None where it is unset or not a number."""
    import os

    value = os.environ.get("COLUMNS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def output_width(stream) -> int | None:
    """The width text for ``stream`` should fit: COLUMNS, else the terminal's; None for a pipe or file."""
    import os

    columns = columns_setting()
    if columns is not None:
        return columns
    try:
        if stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns or None
    except (AttributeError, OSError, ValueError):  # a captured or closed stream: not a terminal
        pass
    return None


def text_console(renderable, width: int | None, file=None, stderr: bool = False, plain: bool = False):
    """A rich Console ``width`` wide, or as wide as ``renderable`` needs where ``width`` is None; ``plain``:
    no colour or style codes whatever FORCE_COLOR says (text that is returned, not printed)."""
    import io

    from rich.console import Console
    from rich.measure import Measurement

    if width is None:
        probe = Console(file=io.StringIO(), width=NATURAL_WIDTH_CAP)
        width = max(1, Measurement.get(probe, probe.options, renderable).maximum)
    # No markup, emoji codes or highlighting: text from files must print as written.
    settings = {"markup": False, "emoji": False, "highlight": False}
    if plain:
        settings |= {"color_system": None, "force_terminal": False}
    return Console(file=file, stderr=stderr, width=width, **settings)


def render_plain(renderable, width: int | None) -> str:
    """``renderable`` as plain text (no colour, no trailing spaces) ``width`` wide (None: its natural width)."""
    import io

    buffer = io.StringIO()
    text_console(renderable, width, file=buffer, plain=True).print(renderable)
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip("\n").split("\n"))


def key_value_grid(rows, key_width: int = 12):
    """Aligned ``key  value`` lines as a rich grid: keys in one column, each value wrapped under itself.

    Values are escaped with ``printable`` and shown as plain Text (never console markup)."""
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 1))
    grid.add_column(min_width=key_width, no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in rows:
        grid.add_row(Text(printable(key)), Text(printable(value)))
    return grid


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 epoch``, ``2 epochs``: a count with its noun in the right number."""
    return f"{count} {word if count == 1 else many or word + 's'}"
