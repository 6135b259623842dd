"""The one palette of nbflow's pictures: a colour per state status and per attempt outcome.

The hues are Okabe and Ito's colour-blind-safe set ("Color Universal Design", 2008), so that
every pair stays apart under the common colour-vision deficiencies. Problems (failed,
interrupted, retrying) get the saturated hues; the everyday states (pending, completed) get
calmer fills, so that the eye lands on what needs attention. Each entry also carries the text
colour that reaches WCAG AA contrast (4.5:1) on its fill, so a node's label is legible
whatever the notebook's theme: the node brings its own background.

Text drawn outside a node (legends, axes) follows the theme instead: see :data:`FOREGROUND`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True)
class Swatch:
    """How one status or outcome is painted."""

    fill: str
    """Background of the node or bar, ``#rrggbb``."""
    stroke: str
    """Its outline: a darker shade of the same hue, ``#rrggbb``."""
    text: str
    """Colour of a label drawn on ``fill``, ``#rrggbb``."""


_GREY = Swatch(fill="#e4e4e7", stroke="#71717a", text="#18181b")
_SKY_BLUE = Swatch(fill="#56b4e9", stroke="#1f6f9e", text="#0b1d2b")
_GREEN = Swatch(fill="#7fcfb2", stroke="#00785a", text="#06281d")
_VERMILLION = Swatch(fill="#d55e00", stroke="#8a3c00", text="#150800")
_ORANGE = Swatch(fill="#e69f00", stroke="#8f6300", text="#1f1500")
_PURPLE = Swatch(fill="#cc79a7", stroke="#8c3f6b", text="#1f0a16")
_BLUE = Swatch(fill="#0072b2", stroke="#004a75", text="#ffffff")
# A pale tint of the completed hue: a cached state has a result, which it did not compute.
_PALE_GREEN = Swatch(fill="#d3efe4", stroke="#00785a", text="#06281d")
_YELLOW = Swatch(fill="#f0e442", stroke="#8a7f00", text="#1f1c00")
# Paper white with a grey outline: a skipped state is there, and nothing happened in it.
_BLANK = Swatch(fill="#ffffff", stroke="#a1a1aa", text="#3f3f46")

STATUS_COLORS: Final = MappingProxyType(
    {
        "pending": _GREY,
        "running": _SKY_BLUE,
        "completed": _GREEN,
        "cached": _PALE_GREEN,
        "stale": _YELLOW,
        "skipped": _BLANK,
        "failed": _VERMILLION,
        "retrying": _ORANGE,
        "interrupted": _PURPLE,
        "restored": _BLUE,
    }
)
"""Every status of :data:`nbflow.ui.model.STATUSES` → its :class:`Swatch`."""

OUTCOME_COLORS: Final = MappingProxyType(
    {
        "completed": _GREEN,
        "cached": _PALE_GREEN,
        "skipped": _BLANK,
        "failed": _VERMILLION,
        "interrupted": _PURPLE,
        "running": _SKY_BLUE,
        # A backoff wait is the state's "retrying" phase; the timeline also hatches it.
        "backoff": _ORANGE,
    }
)
"""Every attempt outcome of :class:`nbflow.ui.model.AttemptBar` → its :class:`Swatch`."""

OUTCOMES: Final = tuple(OUTCOME_COLORS)
"""The attempt outcomes, in legend order."""

EDGE: Final = "#8c8c8c"
"""Edges, grid lines and axes: a mid grey that shows on white and on near-black."""

FONT_FAMILY: Final = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"

FOREGROUND: Final = (
    "color: #767676; color: var(--jp-ui-font-color1, var(--vscode-editor-foreground, #767676))"
)
"""Root ``style`` of every picture; free text is drawn in ``currentColor``.

Inline in JupyterLab or VS Code the theme's text colour applies. Where the picture is shown
as an image, or saved to a file, the variables are unset and the fallback, a grey with about
4.5:1 contrast on both white and black, keeps it legible in light and dark themes alike. The
plain first declaration serves renderers that do not know ``var()`` (librsvg).
"""
