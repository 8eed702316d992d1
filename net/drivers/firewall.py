"""Security groups on the host: iptables chains per port, matched on the port's bridged
tap (``br_netfilter`` hands bridged frames to the host's FORWARD chain), as Neutron's
iptables firewall driver does.

The host's filter table is shared with everything else on the host, so this never
restores it whole: one ``iptables-restore --noflush`` declares (and so flushes) this
cloud's chains, fills them, and deletes the stale ones, in one atomic commit. FORWARD
gets two jumps into them, added once:

- ``sk<cloud>-out``: from a tap of this cloud: anti-spoofing (the port's own MAC and
  addresses only; DHCP discovery allowed, DHCP serving not), then its egress rules;
  allowed traffic RETURNs so the receiver's ingress rules still apply.
- ``sk<cloud>-in``: to a tap of this cloud: replies and DHCP answers, then the ingress
  rules; traffic to the network service's own legs (DHCP, routers) is accepted.
- ``sk<cloud>r<group8>``: a group's ingress rules, once, which the ingress chain of every
  port in the group jumps to; ``sk<cloud>g<group8>``: a group's members, where an ingress
  rule from that remote group jumps. Written into every port's chain, the default group's
  N ports made N*N rules (12,100 for 110 ports) and each rule N more, most of a change's
  restore time. Egress rules (one "anywhere" rule by default) stay in the port's chain:
  they RETURN, which a group chain would turn into a fall-through.
"""

from __future__ import annotations

import os
import subprocess

from soko.net.drivers.base import FirewallRule, PortFirewall
from soko.net.drivers.iptables import IptablesError


class Firewall:
    def __init__(self, cloud: str, tap_name):
        self.prefix = f"sk{cloud}"
        self.tap_pattern = f"tap{cloud}+"
        self.tap_name = tap_name
        self.into, self.out = f"sk{cloud}-in", f"sk{cloud}-out"

    def jumps(self) -> list[str]:
        return [f"FORWARD -m physdev --physdev-in {self.tap_pattern} --physdev-is-bridged "
                f"-j {self.out}",
                f"FORWARD -m physdev --physdev-out {self.tap_pattern} --physdev-is-bridged "
                f"-j {self.into}"]

    def chain(self, kind: str, port_id: str) -> str:
        return f"{self.prefix}{kind}{port_id[:8]}"

    def rules(self, ports: tuple[PortFirewall, ...]) -> tuple[list[str], list[str]]:
        """The chains this cloud's ports need and the rules that fill them."""
        chains, rules = [self.into, self.out], []
        group_rules: dict[str, list[FirewallRule]] = {}
        for port in ports:
            tap = self.tap_name(port.port_id)
            ingress, spoof, egress = (self.chain(k, port.port_id) for k in "iof")
            chains += [ingress, spoof, egress]
            rules.append(f"-A {self.out} -m physdev --physdev-in {tap} --physdev-is-bridged "
                         f"-j {spoof}")
            rules.append(f"-A {self.into} -m physdev --physdev-out {tap} --physdev-is-bridged "
                         f"-j {ingress}")
            rules.append(f"-A {spoof} -s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp "
                         f"--sport 68 --dport 67 -j RETURN")
            for ip in port.ips:  # goto: the egress chain's RETURN leaves the port's chains
                rules.append(f"-A {spoof} -s {ip}/32 -m mac --mac-source {port.mac} "
                             f"-g {egress}")
            rules.append(f"-A {spoof} -j DROP")
            rules.append(f"-A {egress} -p udp -m udp --sport 67 --dport 68 -j DROP")
            rules.append(f"-A {egress} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN")
            rules += [f"-A {egress} {m} -j RETURN" for r in port.rules
                      if r.direction == "egress" for m in matches(r, "-d")]
            rules.append(f"-A {egress} -j DROP")
            rules.append(f"-A {ingress} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
            rules.append(f"-A {ingress} -p udp -m udp --sport 67 --dport 68 -j ACCEPT")
            for group_id in dict.fromkeys(r.group for r in port.rules
                                          if r.direction == "ingress"):
                rules.append(f"-A {ingress} -j {self.chain('r', group_id)}")
                group_rules.setdefault(group_id, [r for r in port.rules if r.group == group_id
                                                  and r.direction == "ingress"])
            rules.append(f"-A {ingress} -j DROP")
        rules.append(f"-A {self.into} -j ACCEPT")
        members: dict[str, tuple[str, ...]] = {}
        for group_id, allowed in group_rules.items():
            chain = self.chain("r", group_id)
            chains.append(chain)
            for r in allowed:
                if r.remote_group is None:
                    rules += [f"-A {chain} {m} -j ACCEPT" for m in matches(r, "-s")]
                else:
                    members[r.remote_group] = r.remotes
                    rules.append(" ".join(filter(None, (
                        f"-A {chain}", protocol_match(r),
                        f"-j {self.chain('g', r.remote_group)}"))))
        for group_id, addresses in members.items():
            chains.append(self.chain("g", group_id))
            rules += [f"-A {self.chain('g', group_id)} -s {a} -j ACCEPT" for a in addresses]
        return chains, rules

    def apply(self, ports: tuple[PortFirewall, ...]) -> None:
        present_chains, present_rules = self.present()
        if not ports:
            if not present_chains:
                return
            chains, rules = [], [f"-D {j}" for j in self.jumps() if j in present_rules]
        else:
            chains, rules = self.rules(ports)
            # Inserted at the top in reverse, so the egress jump comes first: egress RETURNs
            # what it allows, and the receiver's ingress chain still judges it.
            rules = [f"-I {j}" for j in reversed(self.jumps()) if j not in present_rules] + rules
        stale = sorted(set(present_chains) - set(chains))
        text = ["*filter"] + [f":{c} - [0:0]" for c in chains + stale] + rules
        text += [f"-X {c}" for c in stale] + ["COMMIT", ""]
        restore("\n".join(text))

    def present(self) -> tuple[list[str], set[str]]:
        """This cloud's chains in the host's filter table, and FORWARD's rules."""
        listing = subprocess.run(["iptables", "-w", "5", "-t", "filter", "-S"],
                                 capture_output=True, text=True, check=True,
                                 env={**os.environ, "LC_ALL": "C"}).stdout.splitlines()
        chains = [line.split()[1] for line in listing
                  if line.startswith(f"-N {self.prefix}")]
        forward = {line[len("-A "):] for line in listing if line.startswith("-A FORWARD ")}
        return chains, forward


def matches(rule: FirewallRule, remote_flag: str) -> list[str]:
    """One iptables match per remote (a rule for "anywhere" is one match)."""
    base = protocol_match(rule)
    if rule.remotes is None:
        return [base]
    return [f"{remote_flag} {remote} {base}".strip() for remote in rule.remotes]


def protocol_match(rule: FirewallRule) -> str:
    parts = []
    if rule.protocol is not None:
        parts.append(f"-p {rule.protocol}")
        if rule.protocol in ("tcp", "udp") and rule.port_min is not None:
            high = rule.port_max if rule.port_max is not None else rule.port_min
            parts.append(f"-m {rule.protocol} --dport {rule.port_min}:{high}")
        elif rule.protocol == "icmp" and rule.port_min is not None:
            code = f"/{rule.port_max}" if rule.port_max is not None else ""
            parts.append(f"-m icmp --icmp-type {rule.port_min}{code}")
    return " ".join(parts)


def restore(text: str) -> None:
    proc = subprocess.run(["iptables-restore", "-w", "5", "--noflush"], input=text,
                          capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    if proc.returncode != 0:
        raise IptablesError(f"iptables-restore of the security groups failed "
                            f"({proc.returncode}): {proc.stderr.strip()}\n{text}")
