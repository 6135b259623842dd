"""Network and FUSE filesystems: detected, said once, and opened in a mode safe there."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbflow import Flow
from nbflow.store import Home
from nbflow.store.filesystems import mount_of, parse_mountinfo

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
35 22 0:31 / /mnt/nfs rw,relatime shared:9 - nfs4 fileserver:/export/home rw,vers=4.2
36 22 0:32 / /mnt/smb rw,relatime - cifs //nas/team rw,vers=3.0
37 22 0:33 / /mnt/remote\\040box rw - fuse.sshfs me@host:/data rw,user_id=0
38 22 8:17 / /media/usb rw - fuseblk /dev/sdb1 rw,user_id=0
39 35 0:34 / /mnt/nfs/local rw - ext4 /dev/vdb rw
"""


@pytest.mark.parametrize(
    ("path", "kind", "network"),
    [
        ("/home/me/project", "ext4", False),
        ("/mnt/nfs/me/project", "nfs4", True),
        ("/mnt/smb/q3", "cifs", True),
        ("/mnt/remote box/x", "fuse.sshfs", True),
        ("/media/usb/notebooks", "fuseblk", False),
        ("/mnt/nfs/local/project", "ext4", False),  # the deepest mount point wins
        ("/mnt/nfsx/project", "ext4", False),  # a prefix of a name is not a parent
    ],
)
def test_the_mount_of_a_path_is_its_deepest_mount_point(
    path: str, kind: str, network: bool
) -> None:
    mount = mount_of(Path(path), MOUNTINFO)
    assert mount is not None
    assert (mount.fs_type, mount.is_network) == (kind, network)


def test_descriptions_name_the_filesystem_and_where_it_comes_from() -> None:
    mounts = {m.point: m for m in parse_mountinfo(MOUNTINFO)}
    assert mounts["/mnt/nfs"].describe() == "NFS (nfs4, fileserver:/export/home on /mnt/nfs)"
    assert mounts["/mnt/remote box"].describe().startswith("FUSE (fuse.sshfs, me@host:/data")


@contextlib.contextmanager
def fuse_mount(tmp_path: Path) -> Iterator[Path]:
    """A real FUSE mount (bindfs) of a folder of ``tmp_path``, unmounted after."""
    if shutil.which("bindfs") is None:
        pytest.skip("bindfs (Debian package bindfs) is not installed")
    source, point = tmp_path / "source", tmp_path / "fuse"
    source.mkdir()
    point.mkdir()
    mounted = subprocess.run(["bindfs", str(source), str(point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount FUSE here: {mounted.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["fusermount", "-u", str(point)], check=False, capture_output=True)
        subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)


def test_a_history_on_a_fuse_mount_uses_a_rollback_journal_and_works(tmp_path: Path) -> None:
    with fuse_mount(tmp_path) as point:
        home = point / ".nbflow"
        with Home(home) as opened:
            assert opened.database.pragmas()["journal_mode"] == "delete"
            notice = opened.network_notice()
            assert notice is not None
            assert "is on FUSE (fuse" in notice
            assert "rollback journal" in notice
        with Flow("on-fuse", home=home) as flow:
            flow.declare("a", lambda ctx: {**ctx, "a": 1})
            flow.declare("b", lambda ctx: {**ctx, "b": ctx["a"] + 1}, after=["a"])
            result = flow.run()
            assert result.phase.value == "completed"
            assert flow.restore("b") == {"a": 1, "b": 2}
            assert not (home / "nbflow.db-wal").exists()
            assert not (home / "nbflow.db-shm").exists()


def test_a_local_history_keeps_wal(tmp_path: Path) -> None:
    with Home(tmp_path / ".nbflow") as opened:
        assert opened.database.pragmas()["journal_mode"] == "wal"
        assert opened.network_notice() is None


def test_the_kernel_says_once_that_the_history_is_on_a_fuse_mount(tmp_path: Path) -> None:
    from kernel_harness import Kernel

    with fuse_mount(tmp_path) as point:
        kernel = Kernel(tmp_path, NBFLOW_HOME=str(point / ".nbflow"), NBFLOW_TEXT="1")
        try:
            loaded = kernel.ok("%load_ext nbflow")
            assert loaded.text.count("is on FUSE (fuse") == 1
            kernel.ok("%%state a\nx = 41")
            kernel.ok("%flow restore a")
            assert kernel.ok("print(x)").stdout.strip() == "41"
        finally:
            kernel.close()
