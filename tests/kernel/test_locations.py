"""Where history goes: unnamed notebooks, two notebooks in a folder, unwritable folders."""

from __future__ import annotations

from pathlib import Path

from conftest import KernelFactory


def test_unnamed_notebook_uses_the_working_directory_and_says_so(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    kernel = kernels(notebook="")
    loaded = kernel.ok("%load_ext nbflow")
    assert "unnamed notebook (flow 'untitled')" in loaded.text
    assert str(tmp_path / ".nbflow") in loaded.text
    kernel.ok("%%state s\nv = 1")
    assert (tmp_path / ".nbflow" / "nbflow.db").exists()


def test_two_notebooks_in_one_folder_keep_separate_histories(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    one = kernels(notebook="one.ipynb")
    two = kernels(notebook="two.ipynb")
    one.ok("%load_ext nbflow")
    two.ok("%load_ext nbflow")
    one.ok("%%state only_in_one\nv = 1")
    two.ok("%%state only_in_two\nw = 2")
    runs_one = one.ok("%flow runs").text
    runs_two = two.ok("%flow runs").text
    assert "only_in_one" in runs_one
    assert "only_in_two" not in runs_one
    assert "only_in_two" in runs_two
    assert "only_in_one" not in runs_two


def test_folder_that_cannot_hold_history_falls_back_and_says_where(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    (tmp_path / ".nbflow").write_text("a file where the folder should be")
    cache = tmp_path / "cache"
    kernel = kernels(XDG_CACHE_HOME=str(cache))
    loaded = kernel.ok("%load_ext nbflow")
    assert "cannot be written; keeping history in" in loaded.text
    assert str(cache) in loaded.text
    kernel.ok("%%state s\nv = 1")
    assert (tmp_path / ".nbflow").read_text() == "a file where the folder should be"


def test_upstream_not_done_in_this_kernel_is_refused_with_a_suggestion(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    kernel = kernels()
    kernel.ok("%load_ext nbflow")
    kernel.ok("%flow mode declare")
    kernel.ok(f"%%state a\nopen({str(log)!r}, 'a').write('a')")
    kernel.ok("%flow mode run")
    refused = kernel.run(f"%%state b --after a\nopen({str(log)!r}, 'a').write('b')")
    assert refused.status == "error"
    assert "upstream 'a' has not completed" in refused.text
    assert "%flow run b" in refused.text
    assert not log.exists()
    kernel.ok("%flow run b")
    assert log.read_text() == "ab"
