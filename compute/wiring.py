"""Builds the compute service's parts from config: DB, libvirt driver, service credential
and manager. The API factory starts here; ``soko up`` makes compute's service user through
``bootstrap`` and stops the guests through ``teardown``."""

from __future__ import annotations

from pathlib import Path

from soko.common.config import Config, ConfigError
from soko.common.db import create_tables, database_url, make_engine, make_sessionmaker
from soko.common.shared_secret import shared_secret
from soko.compute.clients import ServiceCredential
from soko.compute.manager import ComputeManager, Settings
from soko.compute.models import Base
from soko.compute.service import ComputeConfig


def compute_dir(config: Config) -> Path:
    return config.data_dir / "compute"


def peer_url(config: Config, explicit: str, section_name: str) -> str:
    """A service this one calls: the configured URL, else that service's own section."""
    if explicit:
        return explicit.rstrip("/")
    from soko.identity.service import advertised_endpoint

    try:
        return advertised_endpoint(config.section(section_name))
    except ConfigError:
        return ""  # not part of this deployment: the calls say so when made


SERVICE_PASSWORD_FILE = "compute-service-password"  # in the data dir, unless configured


def service_password(config: Config) -> str:
    section: ComputeConfig = config.section("compute")
    return shared_secret(config.data_dir, SERVICE_PASSWORD_FILE,
                         section.service_password).decode()


def service_credential(config: Config) -> ServiceCredential | None:
    """Compute's service user's login; None where this cloud has no identity to ask."""
    section: ComputeConfig = config.section("compute")
    auth_url = peer_url(config, section.auth_url, "identity")
    if not auth_url:
        return None
    return ServiceCredential(auth_url, section.service_user, service_password(config),
                             section.service_project)


def bootstrap(config: Config) -> list[str]:
    """Compute's service user in this data dir's identity, made (or its password set
    again) at every ``soko up``, so a data dir an older release made gets it too."""
    try:
        config.section("identity")
    except ConfigError:
        return []  # identity is another host's: its operator makes the user
    from soko.identity.bootstrap import ensure_service_user

    section: ComputeConfig = config.section("compute")
    return [ensure_service_user(config, section.service_user, service_password(config),
                                section.service_project)]


def make_manager(config: Config, driver=None, service: ServiceCredential | None = None
                 ) -> ComputeManager:
    """``service``: compute's token source (tests give a fixed one); default: a login as
    ``[compute] service_user``."""
    section: ComputeConfig = config.section("compute")
    state_dir = compute_dir(config)
    engine = make_engine(database_url(section.database_url, state_dir, "compute"))
    create_tables(Base.metadata, engine, state_dir)
    if driver is None:
        from soko.compute.drivers.libvirt import LibvirtDriver

        driver = LibvirtDriver(state_dir, uri=section.libvirt_uri, prefix=section.domain_prefix,
                               virt_type=section.virt_type)
    settings = Settings(
        block_url=peer_url(config, section.block_url, "block"),
        image_url=peer_url(config, "", "image"),
        initiator=section.initiator_name, bridge=section.bridge,
        net_url=peer_url(config, section.net_url, "net"),
        stop_timeout=section.stop_timeout, freeze_max_seconds=section.freeze_max_seconds,
        volume_timeout=section.volume_timeout, host=section.host_name,
        orphan_port_grace=section.orphan_port_grace)
    return ComputeManager(sessions=make_sessionmaker(engine), driver=driver, settings=settings,
                          service=service or service_credential(config))


def teardown(config: Config) -> None:
    """For ``soko down``: the guests shut down and their domains and secrets gone, before
    block takes their targets away; the next start brings them back (``compute/host.py``)."""
    from soko.compute.host import stop_guests

    manager = make_manager(config)
    try:
        stop_guests(manager)
    finally:
        manager.driver.close()
