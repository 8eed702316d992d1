"""``soko-identity``: its config section and service declaration (cheap to import).

Everything other services need to verify tokens reads this section too: where the Fernet
key repository is, which database holds the revocation list, and how often to re-read it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from soko.common.config import Config, ConfigError, ServerSection
from soko.common.service import ServiceSpec


@dataclasses.dataclass
class IdentityConfig(ServerSection):
    port: int = 5000
    # The URL clients are told to use; empty means http://<bind_ip>:<port> (or 127.0.0.1
    # when bound to every address).
    public_url: str = ""
    region: str = "RegionOne"
    # SQLAlchemy URL; empty means SQLite at <data_dir>/identity/identity.db. Every host that
    # validates tokens reads the revocation list from here, so a multi-host cloud points
    # them all at one PostgreSQL URL.
    database_url: str = ""
    # Fernet key repository; empty means <data_dir>/identity/fernet-keys. Hosts that verify
    # tokens need a copy (as with Keystone's key repository).
    key_dir: str = ""
    max_active_keys: int = 3
    token_ttl: int = 3600  # seconds a token stays valid
    # Validators re-read the revocation list at most this many seconds apart: a revoked
    # token stops working everywhere within this bound.
    revocation_refresh: float = 2.0
    # When the list cannot be re-read for this long, validators refuse every token (503)
    # rather than break the promise above.
    revocation_max_staleness: float = 30.0
    # After this many consecutive failed logins for one user name, logins for that name are
    # refused for lockout_seconds (0 disables the lockout).
    lockout_failures: int = 5
    lockout_seconds: int = 300
    # scrypt cost for new password hashes (2**n); old hashes keep the cost they were made with.
    scrypt_log2_n: int = 14

    catalog_type: ClassVar[str] = "identity"
    catalog_name: ClassVar[str] = "keystone"
    catalog_path: ClassVar[str] = "/v3"

    def validate(self) -> None:
        super().validate()
        if self.token_ttl < 60:
            raise ConfigError(f"token_ttl: must be at least 60 seconds, got {self.token_ttl}")
        if self.max_active_keys < 3:
            raise ConfigError(
                f"max_active_keys: must be at least 3 (staged, primary, one secondary), "
                f"got {self.max_active_keys}"
            )
        if not 0 < self.revocation_refresh <= 60:
            raise ConfigError(
                f"revocation_refresh: must be in (0, 60] seconds, got {self.revocation_refresh}"
            )
        if self.revocation_max_staleness < self.revocation_refresh:
            raise ConfigError("revocation_max_staleness: must be at least revocation_refresh")
        if self.lockout_failures < 0 or self.lockout_seconds < 0:
            raise ConfigError("lockout_failures and lockout_seconds: must not be negative")
        if not 10 <= self.scrypt_log2_n <= 20:
            raise ConfigError(f"scrypt_log2_n: must be 10..20, got {self.scrypt_log2_n}")


def identity_section(config: Config) -> IdentityConfig:
    """The ``[identity]`` section, or its defaults when this process did not register it."""
    section = config.sections.get("identity")
    return section if isinstance(section, IdentityConfig) else IdentityConfig()


def identity_dir(config: Config) -> Path:
    return Path(config.data_dir) / "identity"


def key_dir(config: Config) -> Path:
    section = identity_section(config)
    return Path(section.key_dir) if section.key_dir else identity_dir(config) / "fernet-keys"


def db_url(config: Config) -> str:
    from soko.common.db import database_url

    return database_url(identity_section(config).database_url or None, identity_dir(config),
                        "identity")


def advertised_endpoint(section: ServerSection) -> str:
    """Where clients should connect: ``public_url`` if set, else bind address and port."""
    public = getattr(section, "public_url", "")
    if public:
        return public.rstrip("/")
    host = section.bind_ip
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{section.port}"


SERVICE = ServiceSpec(
    name="identity",
    summary="projects, users, roles and tokens (Keystone v3 subset)",
    section=IdentityConfig,
    app_factory="soko.identity.api:make_app",
    bootstrap="soko.identity.bootstrap:bootstrap",
)
