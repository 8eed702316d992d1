"""The host side of the network service: one driver realises networks and routers."""
