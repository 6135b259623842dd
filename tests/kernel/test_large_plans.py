"""Large plans in a real kernel: the live DAG of a 300-state run, and a long history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from conftest import KernelFactory

PRESENTER = "__nbflow__.session.presenter"
DISPLAYS = ("display_data", "update_display_data")


def declared_chain(kernels: KernelFactory, n: int) -> Any:
    kernel = kernels()
    kernel.ok("%load_ext nbflow")
    kernel.ok("%flow mode declare")
    for i in range(n):
        after = f" --after s{i - 1}" if i else ""
        kernel.ok(f"%%state s{i}{after}\nx_{i} = {i}")
    return kernel


def sent_at(message: dict[str, Any]) -> float:
    """When the kernel sent ``message``, in seconds (its header's date)."""
    date = message["header"]["date"]
    return (date if isinstance(date, datetime) else datetime.fromisoformat(date)).timestamp()


def test_a_live_run_of_300_states_sends_a_few_updates_a_second(kernels: KernelFactory) -> None:
    """The live DAG of a run of 300 states is laid out once; then only its header (the
    progress and a style sheet that recolours the picture) is updated, at most four times
    a second; the last state is always drawn."""
    kernel = declared_chain(kernels, 300)
    messages = kernel.messages("%flow run")
    displays = [m for m in messages if m["msg_type"] in DISPLAYS]
    times = sorted(sent_at(m) for m in displays)
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    # Four header updates a second, and the picture itself at most once more.
    assert busiest <= 6, f"{busiest} display messages within one second"
    pictures = [m for m in displays if "image/svg+xml" in m["content"]["data"]]
    assert len(pictures) == 2, "the layout at the start and the final picture"
    final = pictures[-1]["content"]["data"]["image/svg+xml"]
    assert 'data-status="completed"' in final
    assert 'data-status="pending"' not in final  # no node left pending
    assert "300 states" in final
    headers = [m for m in displays if "image/svg+xml" not in m["content"]["data"]]
    assert "300/300 states" in headers[-1]["content"]["data"]["text/html"]
    updates = [m["content"]["data"]["text/html"] for m in headers[1:-1]]
    assert all(len(u) < len(pictures[0]["content"]["data"]["text/html"]) for u in updates)
    assert kernel.ok("print(x_299)").stdout.strip() == "299"


def test_the_live_picture_is_restyled_not_redrawn(kernels: KernelFactory) -> None:
    """A run slow enough to be seen: each update carries CSS rules for the states whose
    status changed, scoped to the picture, and never the picture again."""
    kernel = kernels()
    kernel.ok("%load_ext nbflow")
    kernel.ok("%flow mode declare")
    kernel.ok("%%state a\nimport time\ntime.sleep(0.6)\nx = 1")
    kernel.ok("%%state b --after a\nimport time\ntime.sleep(0.6)\ny = x + 1")
    messages = kernel.messages("%flow run")
    displays = [m["content"]["data"] for m in messages if m["msg_type"] in DISPLAYS]
    pictures = [d for d in displays if "image/svg+xml" in d]
    headers = [d["text/html"] for d in displays if "image/svg+xml" not in d]
    picture_id = pictures[0]["image/svg+xml"].split('id="', 1)[1].split('"', 1)[0]
    assert picture_id.startswith("nbflow-live-")
    styled = [h for h in headers if f"#{picture_id}" in h]
    assert styled, headers
    # Laid out while a ran; while b runs, a is recoloured completed and b running (the
    # timer sends the change though b's code holds the kernel's thread).
    while_b = next(h for h in styled if "running <b>b</b>" in h)
    assert '[data-state="a"]' in while_b
    assert '[data-state="b"]' in while_b
    assert "nbflow-mark-completed" in while_b
    assert "nbflow-mark-running" in while_b
    assert len(pictures) == 2
    assert pictures[-1]["image/svg+xml"].count('data-status="completed"') == 2
    assert "<style>" not in headers[-1]  # the final picture needs no restyling


def test_the_run_history_pages(kernels: KernelFactory) -> None:
    """25 runs: the history shows the newest 20 and turns to the 5 older ones."""
    kernel = kernels()
    kernel.ok("%load_ext nbflow")
    for i in range(25):
        kernel.ok(f"%%state s{i}\nx = {i}")
    shown = kernel.ok("%flow runs")
    assert "… and 5 older runs" in shown.text
    lines = f"{PRESENTER}.last_runs.children[1].children"
    assert kernel.ok(f"print(len({lines}))").stdout.strip() == "20"
    kernel.ok(f"{PRESENTER}.buttons({PRESENTER}.last_runs)['Older'].click()")
    assert kernel.ok(f"print(len({lines}))").stdout.strip() == "5"
    first = kernel.ok(f"print({lines}[-1].children[0].value)").stdout
    assert "s0" in first  # the oldest run is the last line of the last page
    kernel.ok(f"{PRESENTER}.buttons({PRESENTER}.last_runs)['Newer'].click()")
    assert kernel.ok(f"print(len({lines}))").stdout.strip() == "20"
    every = kernel.ok("%flow runs --all")
    assert "older runs" not in every.text
    assert every.text.count("completed") >= 25
