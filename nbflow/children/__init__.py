"""Child runs: a state starts runs of other notebooks or flows, and joins them."""

from nbflow.children.runs import ChildResult, ChildRun, ChildVariables, child, run_child

__all__ = ["ChildResult", "ChildRun", "ChildVariables", "child", "run_child"]
