"""Presentation: what the user sees of plans, runs and timelines (text; widgets later)."""

from nbflow.ui.model import AttemptBar, BannerView, PlanView, RunRow, StateView
from nbflow.ui.presenter import Presenter
from nbflow.ui.text import TextPresenter

__all__ = [
    "AttemptBar",
    "BannerView",
    "PlanView",
    "Presenter",
    "RunRow",
    "StateView",
    "TextPresenter",
]
