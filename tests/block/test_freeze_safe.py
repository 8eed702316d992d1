"""The freeze-safe proof, all real: a volume on the reflink pool, locally attached, ext4,
mounted, a writer appending fsync'd checksummed records as fast as it can, and 20 quiesced
snapshots (``fsfreeze`` plan) taken while it writes. Every snapshot must fsck clean, mount
read-only without journal recovery, and hold every record acknowledged before its freeze
began, intact, with no torn record. Hooks that fail or hang, a snapshot step that blocks
past the watchdog, and a service killed while frozen must all end thawed (the writer goes
on) with a clear error."""

from __future__ import annotations

import errno
import fcntl
import os
import statistics
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from soko.block.quiesce import FITHAW, Quiescer
from soko.image.guest_files import WRITER_RECORDS, verify_writer_records
from soko.tools.bench.snapshot import HostWriter
from tests.block.test_datapath import A, create
from tests.block.test_local_attach import local_attach, local_detach
from tests.support import require_tools, wait_for

pytestmark = pytest.mark.privileged

SNAPSHOTS = 20


class Writer(HostWriter):
    def resumes(self, timeout: float = 10.0) -> None:
        """Fails unless the writer acknowledges new records (its filesystem is thawed)."""
        start = self.count()
        wait_for(lambda: self.count() > start + 3, timeout=timeout, what="the writer to go on")


def not_frozen(mountpoint: Path) -> bool:
    """FITHAW answers EINVAL for a filesystem that is not frozen (and would thaw one that is,
    so a failing check leaves nothing frozen either)."""
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FITHAW, 0)
    except OSError as exc:
        return exc.errno == errno.EINVAL
    finally:
        os.close(fd)
    return False


def snapshot(client, volume_id, plan) -> object:
    return client.simulate_post("/v3/proj-a/snapshots", headers=A, json={
        "snapshot": {"volume_id": volume_id, "force": True, "quiesce": plan}})


def delete_snapshot(client, snapshot_id) -> None:
    assert client.simulate_delete(f"/v3/proj-a/snapshots/{snapshot_id}",
                                  headers=A).status_code == 202


# How each filesystem is made and checked without writing. ext4's freeze leaves a clean
# journal, so its snapshot is checked and mounted read-only as it is. XFS's freeze leaves
# its log covered but not clean (xfs_repair -n reports "valuable metadata changes in a log"
# and the lazy free-block counter), so an XFS snapshot is checked the way an operator would
# use it: a writable copy (O(1)) is mounted once to replay the log, then checked.
FILESYSTEMS = {
    "ext4": (["mkfs.ext4", "-q", "-F"], ["fsck.ext4", "-n", "-f"]),
    "xfs": (["mkfs.xfs", "-q", "-f"], ["xfs_repair", "-n"]),
}


@pytest.fixture(params=["ext4"])
def live_volume(request, real_client, real_manager, tmp_path):
    """A locally attached, formatted (ext4 unless parametrized), mounted volume with the
    writer running on it."""
    mkfs, fsck = FILESYSTEMS[request.param]
    require_tools(mkfs[0], fsck[0], "mount", "umount")
    volume_id = create(real_client, 1)
    device = local_attach(real_client, "volumes", volume_id)
    mnt = tmp_path / "data"
    mnt.mkdir()
    writer = None
    try:
        subprocess.run([*mkfs, device], check=True)
        subprocess.run(["mount", device, str(mnt)], check=True)
        try:
            writer = Writer(mnt, tmp_path / "writer.acked")
            writer.resumes()
            yield volume_id, mnt, writer, request.param
        finally:
            if writer is not None:
                writer.stop()
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        local_detach(real_client, "volumes", volume_id)
        real_client.simulate_delete(f"/v3/proj-a/volumes/{volume_id}", headers=A)


def check_snapshot(client, snapshot_id: str, acked_before: int, mnt: Path, fstype: str) -> int:
    """fsck -n clean, mounts read-only, holds records 1..N (N >= acked_before), none torn."""
    if fstype == "ext4":
        device = local_attach(client, "snapshots", snapshot_id)
        try:
            text = checked_records(device, mnt, fstype, "ro")
        finally:
            local_detach(client, "snapshots", snapshot_id)
    else:
        copy_id = create(client, 1, snapshot_id=snapshot_id)
        device = local_attach(client, "volumes", copy_id)
        try:
            subprocess.run(["mount", "-o", "nouuid", device, str(mnt)], check=True)  # replay
            subprocess.run(["umount", str(mnt)], check=True)
            text = checked_records(device, mnt, fstype, "ro,nouuid")
        finally:
            local_detach(client, "volumes", copy_id)
            client.simulate_delete(f"/v3/proj-a/volumes/{copy_id}", headers=A)
    intact = verify_writer_records(text)
    assert text.endswith("\n") and intact == text.count("\n"), "a torn record"
    assert intact >= acked_before, f"acknowledged record {acked_before} is missing"
    return intact


def checked_records(device: str, mnt: Path, fstype: str, options: str) -> str:
    check = subprocess.run([*FILESYSTEMS[fstype][1], device], capture_output=True, text=True)
    assert check.returncode == 0, f"{device} is not clean:\n{check.stdout}{check.stderr}"
    subprocess.run(["mount", "-o", options, device, str(mnt)], check=True)
    try:
        return (mnt / WRITER_RECORDS).read_text()
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize("live_volume", ["ext4", "xfs"], indirect=True)
def test_twenty_quiesced_snapshots_under_a_writer(real_client, real_manager, live_volume,
                                                  tmp_path):
    volume_id, mnt, writer, fstype = live_volume
    real_manager.snapshots.quiescer = Quiescer(real_manager.state_dir,
                                               {"data": [{"kind": "fsfreeze"}]})
    real_manager.set_quota("proj-a", {"snapshots": -1})  # Cinder's default of 10 is too few
    taken = []
    for _ in range(SNAPSHOTS):
        acked_before = writer.count()
        resp = snapshot(real_client, volume_id, "data")
        assert resp.status_code == 202, resp.text
        snap = resp.json["snapshot"]
        assert snap["status"] == "available"
        assert snap["metadata"]["quiesce_plan"] == "data"
        taken.append((snap["id"], acked_before, float(snap["metadata"]["freeze_window_ms"])))
    assert not_frozen(mnt)
    writer.resumes()
    check_mnt = tmp_path / "check"
    check_mnt.mkdir()
    counts = []
    for snapshot_id, acked_before, _ in taken:
        counts.append(check_snapshot(real_client, snapshot_id, acked_before, check_mnt,
                                     fstype))
        delete_snapshot(real_client, snapshot_id)
    assert counts == sorted(counts) and counts[-1] > counts[0]  # taken while it wrote
    windows = sorted(w for _, _, w in taken)
    print(f"\n{fstype}: freeze windows over {SNAPSHOTS} snapshots: p50 {statistics.median(windows):.1f} ms,"
          f" max {windows[-1]:.1f} ms; records per snapshot {counts[0]}..{counts[-1]}")


def test_failing_and_hanging_hooks_end_thawed(real_client, real_manager, live_volume):
    volume_id, mnt, writer, _ = live_volume
    real_manager.snapshots.quiescer = Quiescer(real_manager.state_dir, {
        "failing": [{"kind": "fsfreeze"},
                    {"kind": "exec", "pre": ["sh", "-c", "echo 'Lock wait timeout' >&2; exit 1"],
                     "post": ["true"]}],
        "hanging": [{"kind": "fsfreeze"},
                    {"kind": "exec", "pre": ["sleep", "60"], "post": ["true"], "timeout": 60}],
    }, max_freeze_seconds=1.0)
    for plan, message in (("failing", "Lock wait timeout"), ("hanging", "timed out after")):
        resp = snapshot(real_client, volume_id, plan)
        assert resp.status_code == 409, resp.text
        assert message in resp.json["error"]["message"]
        assert "no snapshot was taken" in resp.json["error"]["message"]
        assert not_frozen(mnt)
        writer.resumes()
    assert real_manager.pool.snapshots() == set()
    assert list((real_manager.state_dir / "frozen").glob("*.json")) == []


def test_a_copy_blocked_past_the_watchdog_is_thawed_and_marked_error(real_client,
                                                                      real_manager,
                                                                      live_volume):
    """The pool's own filesystem is frozen as the plan's last step, so the FICLONE really
    blocks until the watchdog thaws (in reverse: the pool, then the volume)."""
    volume_id, mnt, writer, _ = live_volume
    real_manager.snapshots.quiescer = Quiescer(real_manager.state_dir, {"stuck": [
        {"kind": "fsfreeze"},
        {"kind": "fsfreeze", "mountpoint": str(real_manager.pool.mountpoint)}]},
        max_freeze_seconds=1.0)
    resp = snapshot(real_client, volume_id, "stuck")
    assert resp.status_code == 202
    snap = resp.json["snapshot"]
    assert snap["status"] == "error" and "watchdog" in snap["metadata"]["error"]
    assert float(snap["metadata"]["freeze_window_ms"]) >= 1000
    assert not_frozen(mnt) and not_frozen(real_manager.pool.mountpoint)
    writer.resumes()
    delete_snapshot(real_client, snap["id"])


FREEZE_AND_DIE = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from soko.block.quiesce import Quiescer, Target
    q = Quiescer(Path(sys.argv[1]), {"p": [{"kind": "fsfreeze", "mountpoint": sys.argv[2]}]},
                 max_freeze_seconds=3600)
    with q.frozen(q.steps("p", Target("v")), "killed-" + sys.argv[3]):
        print("frozen", flush=True)
        sys.stdin.read()
""")


def test_a_freeze_left_by_a_killed_service_is_thawed_by_reconcile(real_manager, live_volume):
    _, mnt, writer, _ = live_volume
    proc = subprocess.Popen([sys.executable, "-c", FREEZE_AND_DIE, str(real_manager.state_dir),
                             str(mnt), str(os.getpid())], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "frozen\n"
        stalled = writer.count()
        threading.Event().wait(0.5)
        assert writer.count() <= stalled + 1  # really frozen
        proc.kill()  # SIGKILL: no finally, no watchdog; only the record remains
    finally:
        proc.kill()
        proc.wait()
    real_manager.reconcile()
    assert not_frozen(mnt)
    writer.resumes()
