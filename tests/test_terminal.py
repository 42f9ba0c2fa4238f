"""printable: what a crafted file could hide in a name cannot reach the terminal as a control sequence."""

import pytest

from clca_deploy.terminal import printable


@pytest.mark.parametrize("raw, shown", [
    ("ash\x1b]0;pwned\x07", "ash\\x1b]0;pwned\\x07"),  # OSC: sets the window title even when piped
    ("line\nforged: 100%", "line\\x0aforged: 100%"),
    ("\x9b2J", "\\x9b2J"),  # C1 CSI: clears the screen on some terminals
    ("abc\u202edcba", "abc\\u202edcba"),  # right-to-left override
    ("x\u2028y\x7f", "x\\u2028y\\x7f"),
    ("Prunus avium «Kordia» 桜", "Prunus avium «Kordia» 桜"),  # ordinary text is left alone
])
def test_printable_escapes_controls_and_bidi_only(raw, shown):
    assert printable(raw) == shown
