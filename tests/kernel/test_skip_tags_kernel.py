"""Skip tags in a real kernel: ``%%state --tags`` and ``%flow run --skip-tags``."""

from __future__ import annotations

from pathlib import Path

from conftest import KernelFactory


def test_flow_run_skip_tags_skips_the_tagged_state(kernels: KernelFactory, tmp_path: Path) -> None:
    kernel = kernels(NBFLOW_TEXT="1")
    kernel.ok("%load_ext nbflow")
    kernel.ok("%flow mode declare")
    kernel.ok("%%state load\nrows = [1, 2, 3]")
    kernel.ok("%%state plot --after load --tags slow,figures\nopen('plot.ran', 'w')\nfigure = 1")
    kernel.ok("%%state report --after plot\ntotal = sum(rows)")
    run = kernel.ok("%flow run --skip-tags slow")
    assert "plot skipped (tag slow)" in run.text
    assert not (tmp_path / "plot.ran").exists()
    assert kernel.ok("print(total, 'figure' in dir())").stdout.strip() == "6 False"
    shown = kernel.ok("%flow show").text
    assert "↷ plot" in shown, shown
    unknown = kernel.ok("%flow run --fresh --no-cache --skip-tags nosuch")
    assert "no state of the plan carries tag 'nosuch'" in unknown.text
    assert (tmp_path / "plot.ran").exists()
    bad = kernel.run("%flow run --skip-tags 'two words'")
    assert bad.status == "error"
    assert "--skip-tags" in bad.text
