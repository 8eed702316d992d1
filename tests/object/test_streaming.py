"""A 1 GiB object streams through the proxy both ways without growing its memory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import requests

from tests.object.test_cluster import Api

pytestmark = [pytest.mark.privileged, pytest.mark.slow]
SIZE = 1 << 30
CHUNK = 1 << 20


def proxy_peak_rss_mib(cluster) -> float:
    """The largest peak RSS (VmHWM) among the proxy's gunicorn processes."""
    master = cluster.procs["proxy"].pid
    peaks = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            pgid = os.getpgid(int(pid))
        except (OSError, ProcessLookupError):
            continue
        if pgid == master:
            line = next(x for x in status.splitlines() if x.startswith("VmHWM"))
            peaks.append(int(line.split()[1]) / 1024)
    return max(peaks)


def test_one_gib_put_and_get_keep_proxy_memory_flat(cluster):
    api = Api(*cluster.auth())
    container = f"{api.base}/stream"
    api.put(container)
    block = os.urandom(CHUNK)
    md5 = hashlib.md5()
    for _ in range(SIZE // CHUNK):
        md5.update(block)
    r = api.put(f"{container}/big", data=(block for _ in range(SIZE // CHUNK)))  # chunked
    assert r.status_code == 201 and r.headers["etag"] == md5.hexdigest()
    received = 0
    with requests.get(f"{container}/big", headers=api.headers, stream=True, timeout=120) as r:
        for chunk in r.iter_content(CHUNK):
            received += len(chunk)
    assert received == SIZE
    assert proxy_peak_rss_mib(cluster) < 150
    assert api.delete(f"{container}/big").status_code == 204
