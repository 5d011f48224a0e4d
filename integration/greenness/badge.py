"""The SVG badge of a queue's state: "green" with the last green commit, or "not green" / "no data"."""

from __future__ import annotations

from xml.sax.saxutils import escape

from integration.greenness.model import ScopeState

COLOURS = {"green": "#2da44e", "not green": "#cf222e", "incomplete": "#bf8700", "no data": "#8c959f"}
CHAR_WIDTH = 6.5  # Verdana 11px, about


def badge_text(state: ScopeState) -> tuple[str, str]:
    """(status word, detail) of the badge's right half."""
    if state.head is None:
        return "no data", "no data"
    last = state.last_green.sha[:7] if state.last_green else "none"
    if state.green:
        return "green", f"green {last}"
    word = "incomplete" if state.head.verdict.status.value == "incomplete" else "not green"
    return word, f"{word} (last green {last})"


def badge_svg(label: str, state: ScopeState) -> str:
    """A flat shields-style badge; every text is escaped."""
    word, detail = badge_text(state)
    left_w = int(len(label) * CHAR_WIDTH + 12)
    right_w = int(len(detail) * CHAR_WIDTH + 12)
    total = left_w + right_w
    label_e, detail_e = escape(label), escape(detail)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" '
        f'aria-label="{escape(label, {chr(34): "&quot;"})}: {escape(detail, {chr(34): "&quot;"})}">'
        f"<title>{label_e}: {detail_e}</title>"
        f'<rect width="{left_w}" height="20" fill="#555"/>'
        f'<rect x="{left_w}" width="{right_w}" height="20" fill="{COLOURS[word]}"/>'
        '<g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="6" y="14">{label_e}</text><text x="{left_w + 6}" y="14">{detail_e}</text></g></svg>'
    )
