"""Builds the compute service's parts from config: DB, libvirt driver and manager. The API
factory starts here, and ``soko up`` stops the guests through ``teardown``."""

from __future__ import annotations

from pathlib import Path

from soko.common.config import Config, ConfigError
from soko.common.db import create_tables, database_url, make_engine, make_sessionmaker
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


def make_manager(config: Config, driver=None) -> ComputeManager:
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
        volume_timeout=section.volume_timeout)
    return ComputeManager(sessions=make_sessionmaker(engine), driver=driver, settings=settings)


def teardown(config: Config) -> None:
    """For ``soko down``: the guests shut down and their domains and secrets gone, before
    block takes their targets away; the next start brings them back (``compute/host.py``)."""
    from soko.compute.host import stop_guests

    manager = make_manager(config)
    try:
        stop_guests(manager)
    finally:
        manager.driver.close()
