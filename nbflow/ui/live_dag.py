"""The live DAG of a run: laid out once, then restyled as statuses change.

Drawing the whole plan after every event cost a ``dot`` process, an XML parse and the
whole picture sent to the frontend each time: a run of n states cost O(n²). Here the plan
is laid out once per plan change (child runs add nodes) and each later update is a small
style sheet that recolours the nodes whose status changed since the layout and shows the
mark of their new status (every label carries all the marks, all but one hidden). The
style sheet is scoped to the picture's id, so several live DAGs on one page stay apart.

Where the picture is shown as an image rather than inline (a frontend that prefers
``image/svg+xml``), the style sheet cannot reach it: the header still counts the states,
and the final picture, drawn anew when the run ends, is exact.
"""

from __future__ import annotations

from collections.abc import Mapping

from nbflow.ui.colors import STATUS_COLORS
from nbflow.ui.dag_groups import find_folds, fold_statuses, fold_view
from nbflow.ui.dag_svg import render_plan_svg
from nbflow.ui.model import PlanView

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.- ")
_SHAPES = ":is(rect,path,polygon,ellipse)"


def css_string(text: str) -> str:
    """``text`` as a quoted CSS string; anything but plain characters is escaped, so that
    no name can end the string, the rule or the ``<style>`` element."""
    return '"' + "".join(c if c in _SAFE else f"\\{ord(c):x} " for c in text) + '"'


class LivePicture:
    """One layout of a run's plan, and the style sheets that bring it up to date."""

    def __init__(self, view: PlanView, nodes: tuple[str, ...], element_id: str) -> None:
        self.element_id = element_id
        self.nodes = nodes
        """The nodes this layout has; a frame with other nodes needs a new layout."""
        rendered = render_plan_svg(view, live_id=element_id)
        self.svg = rendered.svg
        self.hint = rendered.hint
        self._folds = find_folds(view)
        drawn = fold_view(view, self._folds).states
        self._drawn = {state.state_id: state.status for state in drawn}
        self._children = {state.state_id for state in drawn if state.child is not None}

    def style(self, statuses: Mapping[str, str]) -> str:
        """CSS rules that show ``statuses`` on the layout: one group of rules per status,
        for the nodes whose status differs from the one they were drawn with."""
        changed: dict[str, list[str]] = {}
        for node, status in fold_statuses(statuses, self._folds).items():
            drawn = self._drawn.get(node)
            if drawn is not None and drawn != status:
                changed.setdefault(status, []).append(node)
        root = f"#{self.element_id}"
        rules: list[str] = []
        for status, nodes in sorted(changed.items()):
            color = STATUS_COLORS.get(status, STATUS_COLORS["pending"])
            scope = f"{root} :is({','.join(f'[data-state={css_string(n)}]' for n in nodes)})"
            dashed = [n for n in nodes if status == "pending" or n in self._children]
            rules += [
                f"{scope}>{_SHAPES}{{fill:{color.fill};stroke:{color.stroke};"
                "stroke-dasharray:none}",
                f"{scope} text{{fill:{color.text}}}",
                f"{scope} .nbflow-mark{{display:none!important}}",
                f"{scope} .nbflow-mark.nbflow-mark-{status}{{display:inline!important}}",
            ]
            if dashed:
                again = ",".join(f"[data-state={css_string(n)}]" for n in dashed)
                rules.append(f"{root} :is({again})>{_SHAPES}{{stroke-dasharray:4 3}}")
        return "".join(rules)
