"""The host's metadata proxy (``net/metadata_proxy.py``) from the driver's side: which
namespaces it serves and with which map, and the one process that does it.

Like dnsmasq's files, each namespace's map is a file rewritten by rename; a change sends
SIGHUP, which makes the proxy re-read them. The pid file plus a check of the process's
command line find the running proxy, so a second is never started (after a kill -9 the
next apply starts a fresh one), and the last namespace removed stops it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from soko.common.procs import pid_alive, stop_pid
from soko.net.drivers.base import MetadataEntry
from soko.net.drivers.dnsmasq import replace_file

MODULE = "soko.net.metadata_proxy"


class ProxyError(RuntimeError):
    pass


def entries_map(entries: tuple[MetadataEntry, ...]) -> dict:
    return {e.ip: {"instance_id": e.instance_id, "project_id": e.project_id,
                   "ports": list(e.ports)} for e in entries}


class MetadataProxy:
    def __init__(self, state_dir: Path, upstream: str, secret_file: Path | None):
        self.dir = state_dir
        self.maps = state_dir / "namespaces"
        self.pid_file = state_dir / "pid"
        self.upstream = upstream
        self.secret_file = secret_file

    @property
    def enabled(self) -> bool:
        return bool(self.upstream)

    def serve(self, namespace: str, listen: tuple[str, int],
              entries: tuple[MetadataEntry, ...]) -> None:
        if not self.enabled:
            return
        self.maps.mkdir(parents=True, exist_ok=True)
        changed = replace_file(self.maps / f"{namespace}.json", json.dumps(
            {"listen": list(listen), "instances": entries_map(entries)}, sort_keys=True))
        pid = self.running_pid()
        if pid is None:
            self.start()
        elif changed:
            os.kill(pid, signal.SIGHUP)

    def stop_serving(self, namespace: str) -> None:
        path = self.maps / f"{namespace}.json"
        if not path.exists():
            return
        path.unlink()
        self.settle()

    def keep_only(self, namespaces: set[str]) -> None:
        """Forgets every namespace not in ``namespaces`` (reconcile and teardown)."""
        if self.maps.is_dir():
            for path in self.maps.glob("*.json"):
                if path.stem not in namespaces:
                    path.unlink()
        self.settle()

    def serving(self) -> set[str]:
        return {p.stem for p in self.maps.glob("*.json")} if self.maps.is_dir() else set()

    def settle(self) -> None:
        """No namespace left: the process goes; else it re-reads its maps."""
        pid = self.running_pid()
        if not self.serving():
            if pid is not None:
                stop_pid(pid)
            self.pid_file.unlink(missing_ok=True)
        elif pid is not None:
            os.kill(pid, signal.SIGHUP)

    def running_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        ours = MODULE.encode() in cmdline and str(self.dir).encode() in cmdline
        return pid if ours and pid_alive(pid) else None

    def start(self) -> None:
        replace_file(self.dir / "config.json", json.dumps(
            {"upstream": self.upstream, "secret_file": str(self.secret_file)}))
        proc = subprocess.run([sys.executable, "-m", MODULE, str(self.dir)],
                              capture_output=True, text=True, timeout=30,
                              env={**os.environ, "LC_ALL": "C"})
        if proc.returncode != 0:
            raise ProxyError(f"the metadata proxy did not start ({proc.returncode}): "
                             f"{proc.stderr.strip()[-2000:]}")

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.keep_only(set())
