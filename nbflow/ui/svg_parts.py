"""What every nbflow picture is made of: clean, escaped text, its width, short labels,
picture ids, and the legend of swatches."""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Sequence

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def clean_text(text: str) -> str:
    """``text`` without what XML cannot hold: terminal colour codes and control characters.

    Tracebacks from IPython carry ANSI colour codes; escaping alone would leave an ESC
    character that makes the whole document unparsable.
    """
    return _NOT_XML.sub("\ufffd", _ANSI.sub("", text))


def escape(text: str) -> str:
    """``text`` made safe for SVG content and attribute values."""
    return html.escape(clean_text(text), quote=True)


def text_width(text: str, font_size: float) -> float:
    """A generous estimate of the rendered width of ``text``; fonts are not at hand here."""
    return len(text) * font_size * 0.62


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def picture_id(*parts: object) -> str:
    """A short id, the same for the same picture, to keep ``<defs>`` ids of pictures apart.

    Several pictures share one page in a notebook, and so one id namespace.
    """
    return hashlib.blake2s(repr(parts).encode(), digest_size=4).hexdigest()


def legend_svg(
    items: Sequence[tuple[str, str]], x: float, y: float, width: float
) -> tuple[str, float]:
    """A legend of ``(swatch markup drawn in a 14 by 14 box at the origin, label)`` items.

    Items flow left to right in columns of one width and wrap at ``width``. Returns the
    markup and its height.
    """
    parts = ['<g class="nbflow-legend">']
    cx, cy, row = x, y, 20.0
    item_width = max((14 + 5 + text_width(label, 11) * 0.9 + 14 for _, label in items), default=0)
    for swatch, label in items:
        if cx > x and cx + item_width > x + width:
            cx, cy = x, cy + row
        parts.append(
            f'<g transform="translate({cx:.1f},{cy:.1f})">{swatch}'
            f'<text x="19" y="11" font-size="11" fill="currentColor">{escape(label)}</text></g>'
        )
        cx += item_width
    parts.append("</g>")
    return "".join(parts), cy - y + row


# --- hover text and the legend, shared by both engines -------------------------------------
