"""The storage-node app: Swift's object, container and account servers in one process.

Routes are prefixed by the server they stand for, so one node process can serve all three
without ambiguity (an object PUT and the listing update it causes share a path shape):

- ``/object/<device>/<partition>/<account>/<container>/<object>``
- ``/container/<device>/<partition>/<account>/<container>[/<object>]`` (``/<object>``: a
  listing row update sent by an object node)
- ``/account/<device>/<partition>/<account>[/<container>]`` (``/<container>``: a container's
  report of its put/delete times and stats)

Every write carries the proxy's ``X-Timestamp``; requests carry its ``X-Trans-Id``.
"""

from __future__ import annotations

import falcon

from soko.common.app import make_base_app
from soko.common.config import Config
from soko.object.node.diskfile import Devices, remove_stale_temps
from soko.object.node.listing_server import (
    AccountContainerResource,
    AccountResource,
    ContainerObjectResource,
    ContainerResource,
    StatsReporter,
)
from soko.object.node.object_server import ObjectResource
from soko.object.node.recon import ReconResource
from soko.object.node.replication_server import (
    MissingResource,
    PartitionHashesResource,
    ReplicateDBResource,
    ReplicatedFileResource,
    ReplicateResource,
    SyncManyDBResource,
)
from soko.object.shared.nodeclient import ConnectionPool


def make_app(config: Config, *, devices: Devices | None = None,
             pool: ConnectionPool | None = None) -> falcon.App:
    """Builds one node's app; ``devices`` and ``pool`` may be injected by tests."""
    section = config.section("storage")
    if devices is None:
        devices = Devices(section.node_devices(config.data_dir), section.mount_check)
    if pool is None:
        pool = ConnectionPool(section.conn_timeout, section.node_timeout)
    for name in devices.names():
        remove_stale_temps(devices.root / name)
    reporter = StatsReporter(pool)
    app = make_base_app()
    app.req_options.auto_parse_qs_csv = False
    app.add_route("/object/{device}/{partition}/{account}/{container}/{obj:path}",
                  ObjectResource(devices, pool))
    app.add_route("/container/{device}/{partition}/{account}/{container}",
                  ContainerResource(devices, reporter))
    app.add_route("/container/{device}/{partition}/{account}/{container}/{obj:path}",
                  ContainerObjectResource(devices, reporter))
    app.add_route("/account/{device}/{partition}/{account}", AccountResource(devices))
    app.add_route("/account/{device}/{partition}/{account}/{container}",
                  AccountContainerResource(devices))
    app.add_route("/recon", ReconResource(config, devices))
    add_replication_routes(app, config, devices)
    return app


def add_replication_routes(app: falcon.App, config: Config, devices: Devices) -> None:
    """The internal calls the replicators of other nodes make (``replication_server``)."""
    from soko.object.daemons.service import DaemonsSection
    from soko.object.node.containerdb import AccountDB, ContainerDB

    reclaim_age = (config.sections.get("object-daemons") or DaemonsSection()).reclaim_age
    base = "/replicate/object/{device}/{partition}"
    app.add_route(base, ReplicateResource(devices, reclaim_age))
    app.add_route(f"{base}/missing", MissingResource(devices))
    app.add_route("/replicate/object-hashes/{device}",
                  PartitionHashesResource(devices, reclaim_age))
    app.add_route(f"{base}/{{digest}}/{{filename}}", ReplicatedFileResource(devices))
    for db_class in (ContainerDB, AccountDB):
        app.add_route(f"/replicate/{db_class.kind}/{{device}}/{{partition}}/{{digest}}",
                      ReplicateDBResource(devices, db_class))
        app.add_route(f"/replicate/{db_class.kind}-sync/{{device}}",
                      SyncManyDBResource(devices, db_class))
