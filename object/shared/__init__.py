"""What the proxy, the storage nodes and the daemons share: timestamps, rings, the internal API."""
