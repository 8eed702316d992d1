"""Subnet arithmetic, no DB: checking a subnet request and picking free addresses.

Neutron's rules: the gateway defaults to the first host address and must lie inside the
CIDR; allocation pools default to every host address but the gateway, must lie inside
the CIDR, must not overlap each other nor hold the gateway. IPv4 only for now.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from soko.common.errors import BadRequest

Net = ipaddress.IPv4Network
Addr = ipaddress.IPv4Address


def parse_cidr(value: object) -> Net:
    if not isinstance(value, str):
        raise BadRequest(f"Invalid input for cidr. Reason: {value!r} is not a valid IP subnet.")
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise BadRequest(f"Invalid input for cidr. Reason: '{value}' is not a valid IP "
                         "subnet.") from None
    if net.version != 4:
        raise BadRequest("Only IPv4 subnets are supported (ip_version 4).")
    if str(net) != value:
        raise BadRequest(f"Invalid input for cidr. Reason: '{value}' isn't a recognized IP "
                         f"subnet cidr, '{net}' is recommended.")
    if net.prefixlen > 30:
        raise BadRequest(f"Invalid input for cidr. Reason: {value} has no room for hosts "
                         "(a prefix of /30 or shorter is needed).")
    return net


def parse_address(field: str, value: object) -> Addr:
    try:
        addr = ipaddress.ip_address(value) if isinstance(value, str) else None
    except ValueError:
        addr = None
    if not isinstance(addr, Addr):
        raise BadRequest(f"Invalid input for {field}. Reason: '{value}' is not a valid "
                         "IPv4 address.")
    return addr


def check_inside(field: str, addr: Addr, net: Net) -> None:
    if addr not in net or addr in (net.network_address, net.broadcast_address):
        raise BadRequest(f"Invalid input for {field}. Reason: {addr} is not a host address "
                         f"of {net}.")


def gateway(net: Net, requested: object, given: bool) -> Addr | None:
    """The subnet's gateway: as requested (``null`` for none), else the first host."""
    if not given:
        return net.network_address + 1
    if requested is None:
        return None
    addr = parse_address("gateway_ip", requested)
    check_inside("gateway_ip", addr, net)
    return addr


def pools(net: Net, gw: Addr | None, requested: object) -> list[tuple[Addr, Addr]]:
    """Checked allocation pools as (first, last) pairs, in address order."""
    if requested is None:
        first, last = net.network_address + 1, net.broadcast_address - 1
        if gw == first:
            return [(first + 1, last)]
        if gw == last:
            return [(first, last - 1)]
        if gw is not None:
            return [(first, gw - 1), (gw + 1, last)]
        return [(first, last)]
    if not isinstance(requested, list) or not requested:
        raise BadRequest("Invalid input for allocation_pools. Reason: a non-empty list of "
                         '{"start": ..., "end": ...} is expected.')
    result = []
    for pool in requested:
        if not isinstance(pool, dict) or set(pool) != {"start", "end"}:
            raise BadRequest("Invalid input for allocation_pools. Reason: each pool is "
                             '{"start": ..., "end": ...}.')
        start = parse_address("allocation_pools", pool["start"])
        end = parse_address("allocation_pools", pool["end"])
        check_inside("allocation_pools", start, net)
        check_inside("allocation_pools", end, net)
        if start > end:
            raise BadRequest(f"Invalid input for allocation_pools. Reason: {start} comes "
                             f"after {end}.")
        if gw is not None and start <= gw <= end:
            raise BadRequest(f"Gateway ip {gw} conflicts with allocation pool {start}-{end}")
        result.append((start, end))
    result.sort()
    for (_, end), (start, _) in zip(result, result[1:], strict=False):
        if start <= end:
            raise BadRequest("Found overlapping allocation pools.")
    return result


def in_pools(addr: Addr, pool_list: Iterable[dict]) -> bool:
    return any(Addr(p["start"]) <= addr <= Addr(p["end"]) for p in pool_list)


def free_addresses(pool_list: Iterable[dict], taken: set[str]) -> Iterator[str]:
    """The pool addresses not in ``taken``, lowest first (Neutron hands them out in order)."""
    for pool in pool_list:
        addr, end = Addr(pool["start"]), Addr(pool["end"])
        while addr <= end:
            if str(addr) not in taken:
                yield str(addr)
            addr += 1


def string_list(field: str, value: object, parse) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest(f"Invalid input for {field}. Reason: a list is expected.")
    return [parse(v) for v in value]


def dns_nameservers(value: object) -> list[str]:
    return string_list("dns_nameservers", value,
                       lambda v: str(parse_address("dns_nameservers", v)))


def host_routes(value: object, net: Net) -> list[dict]:
    """Routes handed out by DHCP: the next hop must be on the subnet (a guest can only
    reach an on-link gateway)."""
    def route(v: object) -> dict:
        if not isinstance(v, dict) or set(v) != {"destination", "nexthop"}:
            raise BadRequest('Invalid input for host_routes. Reason: each route is '
                             '{"destination": CIDR, "nexthop": IP}.')
        try:
            destination = ipaddress.IPv4Network(v["destination"], strict=False)
        except (ValueError, TypeError):
            raise BadRequest(f"Invalid input for host_routes. Reason: '{v['destination']}' "
                             "is not an IPv4 CIDR.") from None
        nexthop = parse_address("host_routes", v["nexthop"])
        check_inside("host_routes", nexthop, net)
        return {"destination": str(destination), "nexthop": str(nexthop)}

    return string_list("host_routes", value, route)
