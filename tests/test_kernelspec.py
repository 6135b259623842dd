"""The "Python 3 (nbflow)" kernelspec, installed into a fresh virtual environment."""

from __future__ import annotations

import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = textwrap.dedent(
    """
    import sys
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import start_new_kernel

    specs = KernelSpecManager().find_kernel_specs()
    spec_dir = specs["python3-nbflow"]
    assert spec_dir.startswith(sys.prefix), (spec_dir, sys.prefix)
    name = KernelSpecManager().get_kernel_spec("python3-nbflow").display_name
    print("display name:", name)
    manager, client = start_new_kernel(kernel_name="python3-nbflow", cwd=sys.argv[1])
    try:
        reply = client.execute_interactive("%flow status", timeout=60)
        print("status:", reply["content"]["status"])
        where = client.execute_interactive(
            "import nbflow, sys; print('nbflow from', nbflow.__file__, 'python', sys.prefix)",
            timeout=60,
        )
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    """
)


@pytest.mark.slow
def test_installed_kernelspec_loads_nbflow_without_load_ext(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # The dependencies come from this environment (a .pth file); the package itself is
    # built as a wheel and installed, so its shared data lands in the new prefix.
    new_site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (new_site / "outer.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "-q", str(ROOT)],
        check=True,
        timeout=300,
    )
    spec = venv / "share" / "jupyter" / "kernels" / "python3-nbflow" / "kernel.json"
    assert spec.exists()
    notebook_folder = tmp_path / "notebooks"
    notebook_folder.mkdir()
    script = tmp_path / "check.py"
    script.write_text(CHECK)
    result = subprocess.run(
        [str(python), str(script), str(notebook_folder)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "display name: Python 3 (nbflow)" in result.stdout
    assert "status: ok" in result.stdout  # %flow worked with no %load_ext
    assert f"python {venv}" in result.stdout
    assert "site-packages/nbflow" in result.stdout  # the installed copy, not the checkout
    assert (notebook_folder / ".nbflow" / "nbflow.db").exists()

    subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "-q", "nbflow"], check=True)
    assert not spec.exists()  # uninstalling removes the kernelspec
