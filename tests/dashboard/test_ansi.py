"""Log text to HTML: colours become classes, and nothing a job prints becomes markup."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from common.ansi import strip_ansi
from common.logbatch import STDERR, STDOUT, SYSTEM, LogLine
from dashboard.ansi import PLAIN, AnsiRenderer, apply_sgr, nearest16
from dashboard.logview import LineRenderer

# Everything our markup may contain: spans with fixed class names, and escaped text.
_MARKUP = re.compile(r'<span class="(?:a-[bdius]|[fb]\d{1,2})(?: (?:a-[bdius]|[fb]\d{1,2}))*">|</span>')


def render(text: str) -> str:
    return AnsiRenderer().line(text)


def test_hostile_text_is_escaped() -> None:
    hostile = '<script>alert(1)</script><img src=x onerror="alert(2)">\'&amp;'
    html = render(hostile)
    assert html == ("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&quot;alert(2)&quot;&gt;"
                    "&#x27;&amp;amp;")
    # inside a coloured span too
    html = render("\x1b[31m<b onmouseover=alert(1)>\x1b[0m")
    assert html == '<span class="f1">&lt;b onmouseover=alert(1)&gt;</span>'


def test_sgr_colours_and_attributes() -> None:
    assert render("\x1b[1;32mok\x1b[0m done") == '<span class="a-b f2">ok</span> done'
    assert render("\x1b[91;44mhi") == '<span class="f9 b4">hi</span>'
    assert render("\x1b[3;4;9mx\x1b[23;24;29my") == '<span class="a-i a-u a-s">x</span>y'
    assert render("\x1b[2mdim\x1b[22mplain") == '<span class="a-d">dim</span>plain'
    assert render("\x1b[38;5;196mred\x1b[39m \x1b[48;2;0;0;238mblue") == (
        '<span class="f9">red</span> <span class="b4">blue</span>')
    assert render("\x1b[mreset") == "reset"


def test_other_sequences_are_dropped_not_obeyed() -> None:
    # cursor moves, erase line, a window title and a hyperlink (never followed)
    text = "\x1b[2K\x1b[1Aa\x1b]0;title\x07b\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\c"
    assert render(text) == "ablinkc"
    assert "evil" not in render(text)


def test_carriage_returns_keep_what_a_terminal_shows() -> None:
    assert render("10%\r50%\r100%") == "100%"
    assert render("done\r") == "done"


def test_control_characters_are_shown_as_pictures() -> None:
    assert render("a\x07b\x00c\x7fd") == "a\u2407b\u2400c\u2421d"
    assert render("tab\tkept") == "tab\tkept"
    assert render("\x9bc1") == "\ufffdc1"


def test_style_carries_to_the_next_line() -> None:
    renderer = AnsiRenderer()
    assert renderer.line("\x1b[33mwarning:") == '<span class="f3">warning:</span>'
    assert renderer.line("still yellow") == '<span class="f3">still yellow</span>'
    assert renderer.line("\x1b[0mplain") == "plain"
    assert renderer.line("plain again") == "plain again"


def test_256_and_true_colour_map_to_the_sixteen() -> None:
    assert nearest16(0, 0, 0) == 0 and nearest16(255, 255, 255) == 15 and nearest16(250, 10, 10) == 9
    assert apply_sgr(PLAIN, "38;5;2").fg == 2  # the first 16 are themselves
    assert apply_sgr(PLAIN, "38;5;232").fg == 0  # near-black grey
    assert apply_sgr(PLAIN, "38;2;300;0").fg is None  # malformed: ignored, nothing raised
    assert strip_ansi("\x1b[1;31merror:\x1b[0m it\x07 broke\r") == "error: it broke"


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_no_input_escapes_its_text(text: str) -> None:
    html = LineRenderer().item(LogLine(1, 0, STDOUT, text.encode(), False, 0.0), text)
    body = html[html.index("</a>") + 4:-len("</li>")]
    assert "<" not in _MARKUP.sub("", body) and ">" not in _MARKUP.sub("", body)
    assert '"' not in _MARKUP.sub("", body)


def test_lines_are_grouped_by_step_and_long_lines_joined() -> None:
    lines = [
        LogLine(1, -1, SYSTEM, b"checked out", False, 0.0),
        LogLine(2, 0, STDOUT, b"part one ", False, 0.0),
        LogLine(3, 0, STDOUT, b"and <two>", True, 0.0),  # the rest of line 2
        LogLine(4, 0, STDERR, b"oops \xff", False, 0.0),
        LogLine(5, 1, STDOUT, b"next step", False, 0.0),
    ]
    groups = LineRenderer().groups(lines)
    assert [step for step, _ in groups] == [-1, 0, 1]
    assert groups[0][1] == '<li id="L1" class="s"><a href="#L1" tabindex="-1">1</a>checked out</li>'
    assert groups[1][1] == ('<li id="L2"><a href="#L2" tabindex="-1">2</a>part one and &lt;two&gt;</li>'
                            '<li id="L4" class="e"><a href="#L4" tabindex="-1">4</a>oops \ufffd</li>')
    # a continuation that arrives on its own (live) is marked for the page to join
    [(step, html)] = LineRenderer().groups([LogLine(9, 2, STDOUT, b"tail", True, 0.0)])
    assert step == 2 and html == '<li id="L9" class="cont"><a href="#L9" tabindex="-1">9</a>tail</li>'
