"""The kernel's ``br_netfilter``, which hands bridged frames to iptables: security groups
are iptables chains on bridged taps, so they hold only where it is loaded.

Debian's kernel builds it as a module that nothing loads at boot; soko loads it then. The
module comes up with its host-wide switches (``net.bridge.bridge-nf-call-*``) at 1, which
would put every bridge's frames on the host through iptables, where until then none went.
Soko needs none of that (each of its bridges with secured ports carries its own flag), so
when it is the one that loaded the module it sets them to 0, as libvirt advises: the host
keeps forwarding as it did, and soko's other bridges skip ``br_netfilter`` (12 % of a
routed TCP stream). Where the module was already there (built in, or loaded by Docker,
which wants the switches at 1) the switches are the host's and stay as they are.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

SWITCHES = Path("/proc/sys/net/bridge")
NAMES = ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables")


class BridgeNetfilterError(RuntimeError):
    """br_netfilter is not loaded and could not be: security groups can't hold."""


def ensure_loaded(switches: Path = SWITCHES,
                  modprobe: tuple[str, ...] = ("modprobe", "br_netfilter")) -> bool:
    """Loads br_netfilter if the host has not; whether soko did (and so set the switches)."""
    if switches.is_dir():
        return False
    loaded = subprocess.run(modprobe, capture_output=True, text=True)
    if loaded.returncode != 0 or not switches.is_dir():
        raise BridgeNetfilterError(
            "security groups need the kernel's br_netfilter, which is not loaded and "
            f"could not be ({(loaded.stderr or loaded.stdout).strip() or 'no such module'}):"
            " run 'modprobe br_netfilter' as root, or use a kernel that has it")
    for name in NAMES:
        switch = switches / name
        if switch.exists():
            switch.write_text("0")
    return True
