"""python-swiftclient, unmodified, against soko's proxy on a real 3-node cluster:
as a library and as the ``swift`` command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from swiftclient import client as swift

from tests.object.cluster import USERS

pytestmark = [pytest.mark.privileged, pytest.mark.slow]
USER = "test:tester"


@pytest.fixture(scope="module")
def conn(cluster):
    return swift.Connection(authurl=f"{cluster.proxy_url}/auth/v1.0", user=USER,
                            key=USERS[USER], retries=0)


def run_swift(cluster, *args: str, cwd: Path | None = None) -> str:
    swift_cli = Path(sys.executable).with_name("swift")
    argv = [str(swift_cli), "-A", f"{cluster.proxy_url}/auth/v1.0", "-U", USER,
            "-K", USERS[USER], *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "ST_"))}
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_library(conn):
    conn.put_container("lib", headers={"X-Container-Meta-Owner": "me"})
    etag = conn.put_object("lib", "dir/a.txt", b"hello", content_type="text/plain",
                           headers={"X-Object-Meta-Color": "red"})
    conn.put_object("lib", "dir/b.txt", b"world!")
    conn.put_object("lib", "top.bin", b"\0" * 10)
    headers, body = conn.get_object("lib", "dir/a.txt")
    assert body == b"hello" and headers["etag"] == etag
    assert headers["x-object-meta-color"] == "red"
    _, listing = conn.get_container("lib", delimiter="/")
    assert [e.get("name") or e.get("subdir") for e in listing] == ["dir/", "top.bin"]
    _, listing = conn.get_container("lib", prefix="dir/")
    assert [e["name"] for e in listing] == ["dir/a.txt", "dir/b.txt"]
    conn.post_object("lib", "dir/a.txt", headers={"X-Object-Meta-Shape": "round"})
    assert conn.head_object("lib", "dir/a.txt")["x-object-meta-shape"] == "round"
    conn.copy_object("lib", "dir/a.txt", destination="/lib/copy.txt")
    assert conn.get_object("lib", "copy.txt")[1] == b"hello"
    _, part = conn.get_object("lib", "dir/b.txt", headers={"Range": "bytes=1-3"})
    assert part == b"orl"
    assert conn.head_container("lib")["x-container-meta-owner"] == "me"
    for name in ("dir/a.txt", "dir/b.txt", "top.bin", "copy.txt"):
        conn.delete_object("lib", name)
    conn.delete_container("lib")
    with pytest.raises(swift.ClientException) as info:
        conn.head_container("lib")
    assert info.value.http_status == 404
    assert "x-account-bytes-used" in conn.head_account()


def test_cli(cluster, tmp_path):
    folder = tmp_path / "site"
    (folder / "css").mkdir(parents=True)
    (folder / "index.html").write_text("<h1>hi</h1>")
    (folder / "css" / "main.css").write_text("h1 {}")
    run_swift(cluster, "upload", "web", "site", cwd=tmp_path)
    (tmp_path / "notes.txt").write_text("notes")
    run_swift(cluster, "upload", "web", "notes.txt", cwd=tmp_path)
    assert run_swift(cluster, "list", "web").split() == [
        "notes.txt", "site/css/main.css", "site/index.html"]
    assert run_swift(cluster, "list", "web", "--prefix", "site/", "--delimiter", "/").split() \
        == ["site/css/", "site/index.html"]
    assert "site/index.html" in run_swift(cluster, "list", "web", "--long")
    run_swift(cluster, "post", "web", "-m", "Color:blue")
    assert "Meta Color: blue" in run_swift(cluster, "stat", "web")
    assert "Containers:" in run_swift(cluster, "stat")
    out = tmp_path / "out"
    out.mkdir()
    run_swift(cluster, "download", "web", "site/index.html", cwd=out)
    assert (out / "site" / "index.html").read_text() == "<h1>hi</h1>"
    run_swift(cluster, "copy", "web", "notes.txt", "--destination", "/web/notes-copy.txt")
    assert "notes-copy.txt" in run_swift(cluster, "list", "web")
    run_swift(cluster, "delete", "web")
    assert "web" not in run_swift(cluster, "list").split()
