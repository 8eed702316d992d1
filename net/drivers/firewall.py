"""Security groups on the host: iptables chains per port, matched on the port's bridged
tap (``br_netfilter`` hands bridged frames to the host's FORWARD chain), as Neutron's
iptables firewall driver does.

The host's filter table is shared with everything else on the host, so this never
restores it whole: one ``iptables-restore --noflush`` declares (and so flushes) this
cloud's chains, fills them, and deletes the stale ones, in one atomic commit. Only the
chains a change touches go in it: a record of what the last restore put there (dropped
before each restore, written after, tied to the boot) is what a change is compared with,
so neither listing the table nor restoring every port's chains grows with the ports. A
reconcile reads the table instead of trusting the record. FORWARD gets one jump into
them, added once, for frames onto this cloud's bridges:

- ``sk<cloud>-fwd``: the bridges with secured ports, each sent on to ``sk<cloud>-sg``,
  which passes frames from a tap to the egress chain and frames to a tap to the ingress
  chain. Every other bridge's frames return at once: the external network's (all floating
  IP and SNAT traffic) and the routers' tenant legs on networks with no instance never
  pay the ``physdev`` matches, which cost a routed TCP stream 12 % of its throughput.
- ``sk<cloud>-out``: from a tap of this cloud: anti-spoofing (the port's own MAC and
  addresses only; DHCP discovery allowed, DHCP serving not), then its egress rules;
  allowed traffic RETURNs so the receiver's ingress rules still apply.
- ``sk<cloud>-in``: to a tap of this cloud: replies first, for every port at once (each
  port's chain started with the same rule, and a reply to the router's leg passed every
  port's dispatch first: 3-5 % of a secured guest's routed stream), then DHCP answers and
  the ingress rules; traffic to the network service's own legs (DHCP, routers) is
  accepted. Replies from a tap have passed its anti-spoofing in ``sk<cloud>-out`` first.
- Both find the port's chains in two steps, by the first hex digit of the port's id
  (``sk<cloud>-o<digit>``, ``sk<cloud>-i<digit>``), then by its tap: each frame is matched
  against ~16 + N/16 taps rather than N. The legs of routers and DHCP share the taps'
  prefix, so every routed frame used to pass all N ports' matches both ways: with 110
  ports, 220 ``physdev`` matches on each 64 KiB frame.
- ``sk<cloud>r<group8>``: a group's ingress rules, once, which the ingress chain of every
  port in the group jumps to; ``sk<cloud>g<group8>``: a group's members, where an ingress
  rule from that remote group jumps. Written into every port's chain, the default group's
  N ports made N*N rules (12,100 for 110 ports) and each rule N more, most of a change's
  restore time. Egress rules (one "anywhere" rule by default) stay in the port's chain:
  they RETURN, which a group chain would turn into a fall-through.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from soko.net.drivers.base import FirewallRule, PortFirewall
from soko.net.drivers.dnsmasq import replace_file
from soko.net.drivers.iptables import IptablesError, host_rules, restore_noflush


class Firewall:
    def __init__(self, names, record: Path, filtering):
        self.record = record  # the chains last restored, so a change restores only its own
        self.names = names
        self.filtering = filtering  # (bridges with secured ports, the last ones or None),
        # called before each restore
        self.prefix = f"sk{names.cloud}"
        self.tap_pattern = f"tap{names.cloud}+"
        self.fwd, self.sg = f"{self.prefix}-fwd", f"{self.prefix}-sg"
        self.into, self.out = f"{self.prefix}-in", f"{self.prefix}-out"

    def jumps(self) -> list[str]:
        return [f"FORWARD -o {self.names.bridge_prefix}+ -j {self.fwd}"]

    def ours(self, forward_rule: str) -> bool:
        """Whether a FORWARD rule jumps into this cloud's chains (this soko's or an older's)."""
        return forward_rule.rsplit(" -j ", 1)[-1].startswith(f"{self.prefix}-")

    def chain(self, kind: str, port_id: str) -> str:
        return f"{self.prefix}{kind}{port_id[:8]}"

    def bucket(self, way: str, port_id: str) -> str:
        """The dispatch chain of the ports whose ids start with ``port_id``'s first digit."""
        return f"{self.prefix}-{way}{port_id[0]}"

    def wanted(self, ports: tuple[PortFirewall, ...]) -> dict[str, list[str]]:
        """Each chain this cloud's ports need, with the rules that fill it, in order."""
        chains: dict[str, list[str]] = {}

        def add(chain: str, spec: str) -> None:
            chains.setdefault(chain, []).append(f"-A {chain} {spec}")

        for bridge in sorted({self.names.bridge(port.network_id) for port in ports}):
            add(self.fwd, f"-o {bridge} -g {self.sg}")
        if ports:
            add(self.sg, f"-m physdev --physdev-in {self.tap_pattern} --physdev-is-bridged "
                         f"-j {self.out}")
            add(self.sg, f"-m physdev --physdev-out {self.tap_pattern} --physdev-is-bridged "
                         f"-j {self.into}")
            add(self.into, "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        group_rules: dict[str, list[FirewallRule]] = {}
        for digit in sorted({port.port_id[0] for port in ports}):
            taps = f"{self.tap_pattern[:-1]}{digit}+"
            add(self.out, f"-m physdev --physdev-in {taps} --physdev-is-bridged "
                          f"-j {self.bucket('o', digit)}")
            add(self.into, f"-m physdev --physdev-out {taps} --physdev-is-bridged "
                           f"-j {self.bucket('i', digit)}")
        for port in ports:
            tap = self.names.tap(port.port_id)
            ingress, spoof, egress = (self.chain(k, port.port_id) for k in "iof")
            add(self.bucket("o", port.port_id),
                f"-m physdev --physdev-in {tap} --physdev-is-bridged -j {spoof}")
            add(self.bucket("i", port.port_id),
                f"-m physdev --physdev-out {tap} --physdev-is-bridged -j {ingress}")
            add(spoof, "-s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp "
                       "--sport 68 --dport 67 -j RETURN")
            for ip in port.ips:  # goto: the egress chain's RETURN leaves the port's chains
                add(spoof, f"-s {ip}/32 -m mac --mac-source {port.mac} -g {egress}")
            add(spoof, "-j DROP")
            add(egress, "-p udp -m udp --sport 67 --dport 68 -j DROP")
            add(egress, "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN")
            for r in port.rules:
                if r.direction == "egress":
                    for m in matches(r, "-d"):
                        add(egress, f"{m} -j RETURN".strip())
            add(egress, "-j DROP")
            add(ingress, "-p udp -m udp --sport 67 --dport 68 -j ACCEPT")
            for group_id in dict.fromkeys(r.group for r in port.rules
                                          if r.direction == "ingress"):
                add(ingress, f"-j {self.chain('r', group_id)}")
                group_rules.setdefault(group_id, [r for r in port.rules if r.group == group_id
                                                  and r.direction == "ingress"])
            add(ingress, "-j DROP")
        if ports:
            add(self.into, "-j ACCEPT")
        members: dict[str, tuple[str, ...]] = {}
        for group_id, allowed in group_rules.items():
            chain = self.chain("r", group_id)
            chains.setdefault(chain, [])
            for r in allowed:
                if r.remote_group is None:
                    for m in matches(r, "-s"):
                        add(chain, f"{m} -j ACCEPT".strip())
                else:
                    members[r.remote_group] = r.remotes
                    add(chain, " ".join(filter(None, (
                        protocol_match(r), f"-j {self.chain('g', r.remote_group)}"))))
        for group_id, addresses in members.items():
            chain = self.chain("g", group_id)
            chains.setdefault(chain, [])
            for address in addresses:
                add(chain, f"-s {address} -j ACCEPT")
        return chains

    def apply(self, ports: tuple[PortFirewall, ...], recheck: bool = False) -> None:
        """Restores only the chains that differ from what this host last got, trusting
        the record of it unless ``recheck``; a record the host contradicts (a restore
        refused) is dropped and the table read instead."""
        wanted = self.wanted(ports)
        last = None if recheck else self.last_applied()
        if last is not None:
            try:
                self.filtering(self.secured(wanted), self.secured(last))
                self.restore_changes(wanted, last, set(self.jumps()) if last else set())
                return
            except IptablesError:
                self.record.unlink(missing_ok=True)
        present_chains, forward = self.present()
        self.filtering(self.secured(wanted), None)
        self.restore_changes(wanted, dict.fromkeys(present_chains), forward)

    def secured(self, chains: dict[str, list[str]]) -> set[str]:
        """The bridges with secured ports: those the forward chain sends on."""
        return {rule.split()[3] for rule in chains.get(self.fwd) or ()}

    def secured_bridges(self) -> set[str] | None:
        """The bridges with secured ports as this host last got them (None: unknown)."""
        last = self.last_applied()
        return None if last is None else self.secured(last)

    def restore_changes(self, wanted: dict[str, list[str]], last: dict[str, list[str] | None],
                        forward: set[str]) -> None:
        """One atomic ``--noflush`` restore: the changed chains declared (so flushed) and
        refilled, the stale ones emptied and deleted, FORWARD's jumps added or removed."""
        changed = [c for c, rules in wanted.items() if last.get(c) != rules]
        stale = sorted(set(last) - set(wanted))
        wanted_jumps = self.jumps() if wanted else []
        jumps = [f"-I {j}" for j in wanted_jumps if j not in forward]  # at the top
        jumps += [f"-D {j}" for j in sorted(forward) if self.ours(j) and j not in wanted_jumps]
        if changed or stale or jumps:
            text = ["*filter"] + [f":{c} - [0:0]" for c in changed + stale] + jumps
            text += [rule for c in changed for rule in wanted[c]]
            text += [f"-X {c}" for c in stale] + ["COMMIT", ""]
            self.record.unlink(missing_ok=True)  # a crash mid-restore: the next one rechecks
            restore_noflush("\n".join(text), "the security groups")
        with contextlib.suppress(OSError):  # no record: the next change reads the table
            self.record.parent.mkdir(parents=True, exist_ok=True)
            replace_file(self.record, json.dumps({"boot": boot_id(), "jumps": self.jumps(),
                                                  "chains": wanted}))

    def last_applied(self) -> dict[str, list[str]] | None:
        """The chains this host got last (None: no record, one from before a reboot, or one
        from a soko that jumped into them from FORWARD otherwise)."""
        try:
            record = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return None
        current = record.get("boot") == boot_id() and record.get("jumps") == self.jumps()
        return record["chains"] if current else None

    def present(self) -> tuple[list[str], set[str]]:
        """This cloud's chains in the host's filter table, and FORWARD's rules."""
        listing = host_rules("filter")
        chains = [line.split()[1] for line in listing
                  if line.startswith(f"-N {self.prefix}")]
        forward = {line[len("-A "):] for line in listing if line.startswith("-A FORWARD ")}
        return chains, forward


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


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
