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
