"""Network namespaces: made without pyroute2's forked helper, and programs run inside."""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading

from pyroute2 import netns

LIBC = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def run_in(namespace: str | None, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """``argv`` run inside ``namespace`` (None: the host's), its output captured as text.
    Through ``ip netns exec``: a child entering the namespace itself (setns in a
    ``preexec_fn``) costs a full fork of this process, ~4x slower."""
    if namespace:
        argv = ["ip", "netns", "exec", namespace, *argv]
    return subprocess.run(argv, capture_output=True, text=True,
                          env={**os.environ, "LC_ALL": "C"}, **kwargs)


def create_namespace(name: str) -> None:
    """pyroute2's ``netns.create`` forks a child to unshare in (most of a reconcile's
    ~100 ms per namespace); a network namespace is per thread, so a short-lived thread of
    ours unshares its own and binds it under the name instead."""
    failed: list[BaseException] = []

    def unshare_and_bind() -> None:
        try:
            if LIBC.unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"unshare for namespace {name} failed")
            netns.attach(name, "thread-self")
        except BaseException as e:  # noqa: BLE001  (raised again in the caller)
            failed.append(e)

    thread = threading.Thread(target=unshare_and_bind, name=f"netns-{name}")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
