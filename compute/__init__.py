"""Just enough compute: images kept in the object store, flavors, and instances on libvirt booted from iSCSI volumes, with guest-agent quiesce for snapshots."""
