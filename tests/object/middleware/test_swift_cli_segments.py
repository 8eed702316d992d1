"""The unmodified ``swift`` CLI uploading in segments and downloading byte-identical: the
round trip issue #17 found returning 0 bytes. ``-S`` alone makes an SLO now that ``/info``
advertises ``slo`` (``--use-slo`` is the CLI's deprecated spelling of that), ``--use-dlo -S``
a DLO (what the CLI fell back to before).

20 MiB in 4 MiB segments (6 segments, the last short) keeps this in CI time; the multi-GiB
round trip of the issue was run by hand (README, "API features")."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.object.cluster import USERS

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

SIZE = 20 * 1024 * 1024 + 123
SEGMENT = 4 * 1024 * 1024


def run_swift(cluster, *args: str, cwd: Path, stderr: bool = False) -> str:
    """The CLI's output (with what it logged to stderr, e.g. ``--debug``, if ``stderr``)."""
    argv = [str(Path(sys.executable).with_name("swift")), "-A",
            f"{cluster.proxy_url}/auth/v1.0", "-U", "test:tester", "-K", USERS["test:tester"],
            *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "ST_"))}
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env,
                            timeout=300)
    assert result.returncode == 0, f"swift {' '.join(args)}: {result.stderr}"
    return result.stdout + (result.stderr if stderr else "")


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("cli") / "big.bin"
    digest = hashlib.md5()
    with open(path, "wb") as f:
        block = os.urandom(1024 * 1024)
        for index in range(SIZE // len(block)):
            chunk = bytes([index]) + block[1:]  # no two MiB alike
            f.write(chunk)
            digest.update(chunk)
        tail = os.urandom(SIZE % len(block))
        f.write(tail)
        digest.update(tail)
    return path, digest.hexdigest()


@pytest.mark.parametrize("kind", ["dlo", "slo"])
def test_segmented_upload_downloads_byte_identical(cluster, big_file, kind):
    path, digest = big_file
    container = f"cli-{kind}-{uuid.uuid4().hex[:6]}"
    mode = [] if kind == "slo" else ["--use-dlo"]  # plain -S: the command
    run_swift(cluster, "upload", "-S", str(SEGMENT), *mode, container, path.name,
              cwd=path.parent)
    stat = run_swift(cluster, "stat", container, path.name, cwd=path.parent)
    assert f"Content Length: {SIZE}" in stat
    assert ("Manifest:" in stat) == (kind == "dlo")
    assert ("X-Manifest-Etag:" in stat) == (kind == "slo")
    out = path.parent / f"out-{kind}.bin"
    run_swift(cluster, "download", container, path.name, "-o", str(out), cwd=path.parent)
    assert out.stat().st_size == SIZE
    assert hashlib.md5(out.read_bytes()).hexdigest() == digest
    out.unlink()
    # the CLI deletes the segments with the manifest (an SLO by multipart-manifest=delete)
    run_swift(cluster, "delete", container, path.name, cwd=path.parent)
    assert run_swift(cluster, "list", f"{container}_segments", cwd=path.parent) == ""
