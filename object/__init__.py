"""The Swift-compatible object store, by role as Swift lays it out.

- ``proxy/``: the Swift API (``app``), its controllers for accounts, containers and objects,
  and how it talks to replicas;
- ``node/``: what runs on a storage node: the on-disk layout (``diskfile``), the object,
  listing (container/account) and replication servers, the container/account DBs;
- ``daemons/``: the replicator, DB replicator, auditor, updater and expirer, and their runner;
- ``shared/``: what the proxy, the nodes and the daemons all speak: timestamps, the
  internal API's conventions and HTTP client, the PUT footer, the rings and their hash salt.

Beside them: ``allinone`` (the store on one host for ``soko up``), ``cli`` (``soko
object``) and ``dispersion``.
"""
