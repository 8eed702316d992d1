"""iptables in a namespace, one whole table at a time with ``iptables-restore``.

Restoring a table replaces it atomically (the kernel swaps the ruleset in one commit), so a
router is never seen with half its NAT rules, and applying the same rules twice is a no-op.
"""

from __future__ import annotations

import os
import subprocess

from soko.net.drivers.namespaces import run_in

BUILTIN_CHAINS = {
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
}


class IptablesError(RuntimeError):
    """iptables-restore refused a table; the message carries its stderr."""


def table_text(table: str, rules: list[str], chains: tuple[str, ...] = ()) -> str:
    lines = [f"*{table}"]
    lines += [f":{chain} ACCEPT [0:0]" for chain in BUILTIN_CHAINS[table]]
    lines += [f":{chain} - [0:0]" for chain in chains]
    lines += rules
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def host_rules(table: str) -> list[str]:
    """The host's ``table`` as ``iptables -S`` lists it (shared with everything else)."""
    return subprocess.run(["iptables", "-w", "5", "-t", table, "-S"], capture_output=True,
                          text=True, check=True,
                          env={**os.environ, "LC_ALL": "C"}).stdout.splitlines()


def restore_noflush(text: str, what: str) -> None:
    """A ``--noflush`` restore into the host's tables: only the chains ``text`` declares
    are replaced, everyone else's rules stay; the kernel commits each table at once."""
    proc = subprocess.run(["iptables-restore", "-w", "5", "--noflush"], input=text,
                          capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    if proc.returncode != 0:
        raise IptablesError(f"iptables-restore of {what} failed "
                            f"({proc.returncode}): {proc.stderr.strip()}\n{text}")


def restore_table(namespace: str | None, table: str, rules: list[str],
                  chains: tuple[str, ...] = ()) -> None:
    """Replaces ``table`` in ``namespace`` (None: the host's) with exactly ``rules``."""
    proc = run_in(namespace, ["iptables-restore", "-w", "5"],
                  input=table_text(table, rules, chains))
    if proc.returncode != 0:
        raise IptablesError(f"iptables-restore of {table} in {namespace or 'the host'} "
                            f"failed ({proc.returncode}): {proc.stderr.strip()}")


def nat_rules(gateway_dev: str, gateway_ip: str | None, snat_cidrs, floating) -> list[str]:
    """A router's NAT: DNAT in and SNAT out per floating IP (before the subnet SNAT, so a
    floating IP's instance leaves with its own address), SNAT per tenant subnet."""
    rules = []
    for pair in floating:
        rules.append(f"-A PREROUTING -d {pair.floating_ip}/32 -j DNAT "
                     f"--to-destination {pair.fixed_ip}")
        rules.append(f"-A OUTPUT -d {pair.floating_ip}/32 -j DNAT "
                     f"--to-destination {pair.fixed_ip}")
    for pair in floating:
        rules.append(f"-A POSTROUTING -s {pair.fixed_ip}/32 -o {gateway_dev} -j SNAT "
                     f"--to-source {pair.floating_ip}")
    if gateway_ip is not None:
        for cidr in snat_cidrs:
            rules.append(f"-A POSTROUTING -s {cidr} -o {gateway_dev} -j SNAT "
                         f"--to-source {gateway_ip}")
    return rules


def metadata_rules(proxy_port: int) -> list[str]:
    """Guests' requests to 169.254.169.254:80, from the router's tenant legs, go to the
    metadata proxy listening in the router's namespace (Neutron's REDIRECT)."""
    return ["-A PREROUTING -d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 "
            f"-j REDIRECT --to-ports {proxy_port}"]
