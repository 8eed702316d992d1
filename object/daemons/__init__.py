"""The durability daemons of a storage node: replicator, DB replicator, auditor, updater, expirer."""
