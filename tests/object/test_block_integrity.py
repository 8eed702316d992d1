"""A flipped block is never served, whole or in a range, on the real cluster (issue 13 #2).

Each test flips 16 bytes of one replica's ``.data`` on disk (its metadata, ETag and block
sums stay as they were written), then reads through the proxy as a client would: every
answer carries the right bytes, the rotten copy is quarantined, and replication restores it.
"""

from __future__ import annotations

import collections
import os
import re
from pathlib import Path

import pytest
import requests
import urllib3

from soko.object.daemons.auditor import Auditor
from soko.object.daemons.replicator import ObjectReplicator
from soko.object.node.blocksums import BLOCK_SIZE, METADATA_KEY, XATTR_PREFIX
from soko.object.node.diskfile import XATTR_NAME, DiskFile, pack_metadata, read_metadata
from tests.object.daemons.test_auditor import data_files, direct_url, node_of, quarantined
from tests.object.inprocess_daemons import node_context, run_pass

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

TRIES = 30
SMALL, LARGE = 64 * 1024, 6 * 1024 * 1024
FLIP_AT = {SMALL: 40_000, LARGE: 5_000_000}


def audit(cluster, path: Path) -> collections.Counter:
    """The auditor's check of one stored copy: a whole pass would read everything the
    session's cluster holds, at the auditor's bytes-per-second limit."""
    stats = collections.Counter()
    auditor = Auditor(node_context(cluster, node_of(path)))
    auditor.audit_object(DiskFile.at_hash(path.parents[4], path.parts[-4], path.parent.name),
                         stats)
    return stats


def flip_bytes(path: Path, offset: int, count: int = 16) -> None:
    """Bit rot: ``count`` bytes inverted in place, nothing else about the file changed."""
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(count)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in old))


def ranges_over(kind: str, at: int, size: int) -> list[tuple[int, int]] | str:
    """(first, last) byte ranges of one ``kind`` covering the flipped bytes at ``at``."""
    block = at // BLOCK_SIZE * BLOCK_SIZE
    return {
        "inside": [(at - 3, at + 20)],
        "spanning": [(max(block - 1000, 0), min(block + BLOCK_SIZE + 1000, size - 1))],
        "suffix": f"bytes=-{size - at + 7}",
        "multi": [(0, 9), (at - 2, at + 30), (size - 5, size - 1)],
    }[kind]


def range_header(spec) -> str:
    return spec if isinstance(spec, str) else "bytes=" + ",".join(f"{a}-{b}" for a, b in spec)


def parts_of(response: requests.Response, size: int) -> dict[tuple[int, int], bytes]:
    """``{(first, last): bytes}`` of a 206, single part or multipart/byteranges."""
    content_type = response.headers["Content-Type"]
    if not content_type.startswith("multipart/byteranges"):
        first, last = map(int, re.match(r"bytes (\d+)-(\d+)/", response.headers["Content-Range"])
                          .groups())
        return {(first, last): response.content}
    boundary = content_type.split("boundary=")[1].encode()
    parts = {}
    for part in response.content.split(b"--" + boundary)[1:-1]:
        head, _, body = part.partition(b"\r\n\r\n")
        first, last = map(int, re.search(rb"bytes (\d+)-(\d+)/", head).groups())
        parts[(first, last)] = body[:-2]  # the CRLF before the next boundary
    return parts


def expected_parts(spec, body: bytes) -> dict[tuple[int, int], bytes]:
    if isinstance(spec, str):
        spec = [(len(body) - int(spec.split("-")[1]), len(body) - 1)]
    return {(a, b): body[a:b + 1] for a, b in spec}


def put_and_rot(api, cluster, container, name: str, size: int) -> tuple[bytes, Path]:
    body = os.urandom(size)
    assert api.put(f"{api.base}/{container}/{name}", data=body).status_code == 201
    bad = data_files(cluster, api, container, name)[0]
    flip_bytes(bad, FLIP_AT[size])
    return body, bad


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["64KiB", "6MiB"])
@pytest.mark.parametrize("kind", ["inside", "spanning", "suffix", "multi"])
def test_ranged_reads_never_serve_a_flipped_block(cluster_api, cluster, cluster_container,
                                                  kind, size):
    api, container = cluster_api, cluster_container
    body, bad = put_and_rot(api, cluster, container, f"o-{kind}", size)
    spec = ranges_over(kind, FLIP_AT[size], size)
    served = []
    for _ in range(TRIES):
        r = api.get(f"{api.base}/{container}/o-{kind}", headers={"Range": range_header(spec)})
        served.append(r.status_code == 206 and parts_of(r, size) == expected_parts(spec, body))
    assert served.count(True) == TRIES
    assert not bad.exists() and quarantined(cluster, node_of(bad))


def test_the_rotten_copy_answers_404_and_replication_restores_it(cluster_api, cluster,
                                                                 cluster_container):
    api, container = cluster_api, cluster_container
    body, bad = put_and_rot(api, cluster, container, "restore", SMALL)
    at = FLIP_AT[SMALL]
    url = direct_url(cluster, api, container, "restore", bad)
    r = requests.get(url, headers={"Range": f"bytes={at}-{at + 15}"}, timeout=5)
    assert r.status_code == 404 and "X-Backend-Timestamp" not in r.headers
    assert not bad.exists()
    run_pass(cluster, ObjectReplicator)
    assert bad.exists() and bad.read_bytes() == body
    assert read_metadata(bad)[METADATA_KEY]  # the copy has its block sums
    r = requests.get(url, headers={"Range": f"bytes={at}-{at + 15}"}, timeout=5)
    assert r.status_code == 206 and r.content == body[at:at + 16]


def test_the_node_cuts_a_full_get_before_a_flipped_block(cluster_api, cluster,
                                                        cluster_container):
    """A flip past what the node checks before answering: its body stops before the rotten
    block (the connection is cut short of Content-Length)."""
    api, container = cluster_api, cluster_container
    body, bad = put_and_rot(api, cluster, container, "whole", LARGE)
    with requests.get(direct_url(cluster, api, container, "whole", bad), timeout=10,
                      stream=True) as r:
        assert r.status_code == 200
        received = b""
        with pytest.raises(urllib3.exceptions.ProtocolError):
            for chunk in r.raw.stream(65536, decode_content=False):
                received += chunk
    assert body.startswith(received) and len(received) <= FLIP_AT[LARGE]
    assert not bad.exists()


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["64KiB", "6MiB"])
def test_full_gets_through_the_proxy_are_whole_and_right(cluster_api, cluster,
                                                         cluster_container, size):
    """Up to 4 MiB the node answers 404 and the proxy reads another replica; past that the
    proxy continues the body from another replica where the node cut it."""
    api, container = cluster_api, cluster_container
    body, bad = put_and_rot(api, cluster, container, "proxied", size)
    for _ in range(TRIES):
        assert api.get(f"{api.base}/{container}/proxied").content == body
    assert not bad.exists()  # the rotten copy was read (and quarantined), yet all came whole


def strip_block_sums(path: Path) -> None:
    """Makes ``path`` a ``.data`` as written before block sums existed."""
    metadata = read_metadata(path)
    metadata.pop(METADATA_KEY, None)
    os.setxattr(path, XATTR_NAME, pack_metadata(metadata))
    for name in os.listxattr(path):
        if name.startswith(XATTR_PREFIX):
            os.removexattr(path, name)


def test_old_format_data_still_reads_and_gains_block_sums(cluster_api, cluster,
                                                          cluster_container):
    api, container = cluster_api, cluster_container
    bodies = {"old-small": os.urandom(SMALL), "old-large": os.urandom(LARGE)}
    for name, body in bodies.items():
        api.put(f"{api.base}/{container}/{name}", data=body)
        for path in data_files(cluster, api, container, name):
            strip_block_sums(path)
        assert api.get(f"{api.base}/{container}/{name}").content == body
        r = api.get(f"{api.base}/{container}/{name}", headers={"Range": "bytes=100-70000"})
        assert r.status_code == 206 and r.content == body[100:70001]
    # A small old copy is MD5-checked whole before a range of it goes out.
    bad = data_files(cluster, api, container, "old-small")[0]
    flip_bytes(bad, FLIP_AT[SMALL])
    for _ in range(TRIES):
        r = api.get(f"{api.base}/{container}/old-small", headers={"Range": "bytes=39990-40100"})
        assert r.status_code == 206 and r.content == bodies["old-small"][39990:40101]
    assert not bad.exists()
    for path in data_files(cluster, api, container, "old-large"):
        assert audit(cluster, path)["block_sums_added"] == 1
        assert read_metadata(path)[METADATA_KEY]
        assert any(n.startswith(XATTR_PREFIX) for n in os.listxattr(path))
