"""Builds the backup manager from the block config: the object store it reaches (as each
requesting user) and the chunking and compression settings."""

from __future__ import annotations

from soko.block.backups import codec
from soko.block.backups.engine import MiB, Settings
from soko.block.backups.manager import BackupManager
from soko.block.backups.models import Backup
from soko.block.backups.store import SwiftStore, account_url
from soko.block.manager import VolumeManager
from soko.block.wiring import block_dir
from soko.common.config import Config
from soko.common.db import create_tables


def make_manager(config: Config, volumes: VolumeManager) -> BackupManager:
    section = config.section("block")
    # The volume manager created the block DB's other tables before this module loaded.
    create_tables(Backup.metadata, volumes.sessions.kw["bind"], block_dir(config),
                  tables=[Backup.__table__])

    def stores(project_id: str, token: str) -> SwiftStore:
        return SwiftStore(account_url(config, project_id), token, section.backup_container,
                          connections=section.backup_workers)

    settings = Settings(chunk_size=section.backup_chunk_size_mb * MiB,
                        compression=codec.resolve(section.backup_compression),
                        workers=section.backup_workers)
    return BackupManager(volumes, stores, settings=settings,
                         container=section.backup_container)
