#!/bin/sh
# udhcpc's hook inside a test namespace standing in for an instance: configures the lease
# as a guest's DHCP client would, and records it for the test (never touches /etc).
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    set -- $staticroutes  # option 121: "dest/len gateway" pairs
    while [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev "$interface"; shift 2; done
    printf 'ip=%s\nmask=%s\nrouter=%s\ndns=%s\nmtu=%s\n' "$ip" "$mask" "$router" "$dns" "$mtu" \
      > "$SOKO_LEASE_FILE" ;;
esac
exit 0
