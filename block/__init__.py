"""The Cinder-style block service: the volume API and manager, pool backends (XFS reflink, LVM thin), iSCSI target helpers (tgt, LIO), snapshots and backups to the object store."""
