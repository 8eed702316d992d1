"""Tenant networking: networks, subnets, ports, routers, floating IPs and security groups, built from network namespaces, bridges, dnsmasq and iptables."""
