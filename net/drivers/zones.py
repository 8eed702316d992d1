"""A connection-tracking zone per network, as Neutron's iptables firewall gives each.

Security groups judge replies by the host's connection tracking, which is one table for
every bridge: with two projects on 10.0.0.0/24, a flow in A from 10.0.0.5:p to 10.0.0.7:q
made B's datagram from 10.0.0.7:q to 10.0.0.5:p look like its reply, and B's ingress rules
let it in. So the frames of each network with secured ports are tracked in a zone of their
own, set in the host's ``raw`` table before tracking starts:

- ``sk<cloud>-zone`` (from ``PREROUTING``): ``-i <bridge> -j CT --zone N`` (bridged frames
  come in on the bridge, as ``br_netfilter`` hands them over);
- ``sk<cloud>-zout`` (from ``OUTPUT``): ``-o <bridge> -j CT --zone N``, so the host's own
  traffic onto a bridge (the external network's gateway address) is tracked in the same zone
  as the answers that come back on it.

Zones are numbers shared by the whole host, so a new network takes the lowest one that no
rule in the ``raw`` table uses (another cloud's included), and a network keeps its zone
while it has secured ports. The driver applies them only when the set of bridges with
secured ports differs from the firewall's record of the last restore (which all of the
service's workers share), or on a reconcile: a memory of its own in each worker let one
worker skip a zone another had since removed.
"""

from __future__ import annotations

import re

from soko.net.drivers.iptables import host_rules, restore_noflush

ZONE = re.compile(r"--zone (\d+)")
MAX_ZONE = 65535


class ConntrackZones:
    def __init__(self, cloud: str):
        self.into, self.out = f"sk{cloud}-zone", f"sk{cloud}-zout"

    def jumps(self) -> list[str]:
        return [f"PREROUTING -j {self.into}", f"OUTPUT -j {self.out}"]

    def apply(self, bridges: set[str]) -> None:
        """Each of ``bridges`` tracked in its zone; this cloud's other zones gone."""
        listing = host_rules("raw")
        taken = {int(z) for line in listing for z in ZONE.findall(line)}
        ours = {line.split()[3]: int(found[1]) for line in listing
                if line.startswith(f"-A {self.into} -i ") and (found := ZONE.search(line))}
        zones = {b: ours[b] for b in bridges if b in ours}
        free = (z for z in range(1, MAX_ZONE + 1) if z not in taken)
        for bridge in sorted(bridges - set(zones)):
            zones[bridge] = next(free)
        present = {line[len("-A "):] for line in listing
                   if line.startswith(("-A PREROUTING ", "-A OUTPUT "))}
        have = [line for line in listing if line.startswith((f"-A {self.into} ",
                                                             f"-A {self.out} "))]
        jumps_right = set(self.jumps()) <= present if zones else \
            not set(self.jumps()) & present
        if sorted(have) != sorted(self.rules(zones)) or not jumps_right:
            restore_noflush(self.text(zones, present), "the conntrack zones")

    def rules(self, zones: dict[str, int]) -> list[str]:
        lines = []
        for bridge, zone in sorted(zones.items(), key=lambda item: item[1]):
            lines.append(f"-A {self.into} -i {bridge} -j CT --zone {zone}")
            lines.append(f"-A {self.out} -o {bridge} -j CT --zone {zone}")
        return lines

    def text(self, zones: dict[str, int], present: set[str]) -> str:
        """One atomic ``--noflush`` restore of this cloud's two chains and their jumps."""
        lines = ["*raw", f":{self.into} - [0:0]", f":{self.out} - [0:0]"]
        if zones:
            lines += [f"-I {j}" for j in self.jumps() if j not in present]
            lines += self.rules(zones)
        else:
            lines += [f"-D {j}" for j in self.jumps() if j in present]
            lines += [f"-X {self.into}", f"-X {self.out}"]
        return "\n".join([*lines, "COMMIT", ""])
