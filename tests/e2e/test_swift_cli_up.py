"""The unmodified ``swift`` CLI and python-swiftclient against ``soko up``'s own proxy, with
the demo key ``soko up`` printed: what a user does right after ``make run``."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from swiftclient import client as swift

from tests.e2e.allinone import AllInOne
from tests.support import wait_for

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


def run_swift(up: AllInOne, *args: str, cwd: Path | None = None) -> str:
    argv = [str(Path(sys.executable).with_name("swift")), "-A", f"{up.proxy_url}/auth/v1.0",
            "-U", "demo:demo", "-K", up.demo_key, *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "ST_"))}
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=120)
    assert result.returncode == 0, f"swift {' '.join(args)}: {result.stderr}"
    return result.stdout


def test_swift_cli_against_soko_up(allinone, tmp_path):
    up = allinone
    assert "Containers: 0" in run_swift(up, "stat")
    site = tmp_path / "site"
    (site / "css").mkdir(parents=True)
    (site / "index.html").write_text("<h1>hi</h1>")
    (site / "css" / "main.css").write_text("h1 {}")
    (tmp_path / "notes.txt").write_text("notes")
    run_swift(up, "upload", "web", "site", cwd=tmp_path)  # a folder
    run_swift(up, "upload", "web", "notes.txt", cwd=tmp_path)  # a file
    run_swift(up, "post", "web", "-m", "Color:blue")
    stat = run_swift(up, "stat", "web")
    assert "Meta Color: blue" in stat and "Objects: 3" in stat
    assert run_swift(up, "list").split() == ["web"]
    assert run_swift(up, "list", "web").split() == [
        "notes.txt", "site/css/main.css", "site/index.html"]
    assert run_swift(up, "list", "web", "--prefix", "site/").split() == [
        "site/css/main.css", "site/index.html"]
    assert run_swift(up, "list", "web", "--delimiter", "/").split() == ["notes.txt", "site/"]
    long = run_swift(up, "list", "web", "--long", "--prefix", "site/index")
    assert "11" in long.split() and "site/index.html" in long  # size column
    out = tmp_path / "out"
    out.mkdir()
    run_swift(up, "download", "web", "site/index.html", "-o", str(out / "index.html"))
    assert (out / "index.html").read_text() == "<h1>hi</h1>"
    run_swift(up, "copy", "web", "notes.txt", "--destination", "/web/copy.txt")
    run_swift(up, "download", "web", "-D", str(out / "all"))
    assert sorted(str(p.relative_to(out / "all")) for p in (out / "all").rglob("*.*")) == [
        "copy.txt", "notes.txt", "site/css/main.css", "site/index.html"]
    assert (out / "all" / "copy.txt").read_text() == "notes"
    run_swift(up, "delete", "web", "copy.txt")
    assert "copy.txt" not in run_swift(up, "list", "web")
    run_swift(up, "delete", "web")  # the container and everything in it
    assert run_swift(up, "list") == ""


def test_swiftclient_library_against_soko_up(allinone):
    conn = swift.Connection(authurl=f"{allinone.proxy_url}/auth/v1.0", user="demo:demo",
                            key=allinone.demo_key, retries=0)
    body = os.urandom(3 * 1024 * 1024 + 7)  # several streaming chunks
    conn.put_container("lib")
    etag = conn.put_object("lib", "blob.bin", body, headers={"X-Object-Meta-Kind": "random"})
    assert etag == hashlib.md5(body).hexdigest()
    headers, got = conn.get_object("lib", "blob.bin")
    assert got == body and headers["x-object-meta-kind"] == "random"
    # Containers report their stats to the account in batches (about once a second).
    wait_for(lambda: conn.head_account()["x-account-bytes-used"] == str(len(body)),
             timeout=30, what="the account to count the object's bytes")
    conn.delete_object("lib", "blob.bin")
    conn.delete_container("lib")
