"""Which process owns an in-flight volume step, and whether it still lives.

An owner is ``host:pid:start``, with the process start time from /proc so a recycled pid
is not mistaken for the original. Owners on another host are assumed alive: only that
host can tell, and its own reconcile will.
"""

from __future__ import annotations

import os
import socket


def start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] == b"Z":
        return None
    return fields[19].decode()  # field 22 of stat(5): starttime


def current_owner() -> str:
    pid = os.getpid()  # read each call: gunicorn forks workers after import
    return f"{socket.gethostname()}:{pid}:{start_ticks(pid)}"


def owner_alive(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname():
        return True
    return pid.isdigit() and start_ticks(int(pid)) == start
