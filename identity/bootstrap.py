"""``soko up``'s first-start step for identity: keys, schema, admin and demo accounts.

The admin password and the demo key are generated, saved as openrc-style files (mode 0600)
in ``<data_dir>/identity/`` and printed once, when created. Later runs leave existing
accounts alone and only point at the files. ``source <data_dir>/identity/admin-credentials``
sets the ``OS_*`` variables that ``soko identity`` and openstack-client read.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from soko.common.config import Config
from soko.common.durable import atomic_write
from soko.identity import passwords
from soko.identity.manager import IdentityManager
from soko.identity.service import advertised_endpoint, identity_dir, identity_section

ADMIN = "admin"
DEMO = "demo"


def credentials_path(config: Config, name: str = ADMIN) -> Path:
    return identity_dir(config) / f"{name}-credentials"


def write_credentials(path: Path, auth_url: str, user: str, password: str,
                      project: str) -> None:
    values = {
        "OS_AUTH_URL": auth_url,
        "OS_USERNAME": user,
        "OS_PASSWORD": password,
        "OS_PROJECT_NAME": project,
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default",
        "OS_IDENTITY_API_VERSION": "3",
    }
    text = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())
    atomic_write(path, text.encode(), mode=0o600)


def read_credentials(path: Path) -> dict[str, str]:
    """The ``OS_*`` values of a credentials file written by ``write_credentials``."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export "):]
        key, sep, value = line.partition("=")
        if sep and key.startswith("OS_"):
            parsed = shlex.split(value)
            values[key] = parsed[0] if parsed else ""
    return values


def ensure_account(manager: IdentityManager, config: Config, name: str, role: str,
                   auth_url: str) -> str:
    """Creates project ``name`` and user ``name`` with ``role`` unless the user exists."""
    if manager.list_users(name=name):
        return f"{name} credentials: {credentials_path(config, name)} (existing account)"
    password = passwords.generate_password()
    if not manager.list_projects(name=name):
        manager.create_project(name, description=f"created by soko up ({name})")
    manager.create_user(name, password, default_project=name)
    manager.grant_role(name, name, role)
    write_credentials(credentials_path(config, name), auth_url, name, password, name)
    return (f"{name} credentials (shown once; saved in {credentials_path(config, name)}): "
            f"project {name}, user {name}, password {password}")


def bootstrap(config: Config) -> list[str]:
    manager = IdentityManager.from_config(config)  # creates the schema and the keys
    auth_url = advertised_endpoint(identity_section(config)) + "/v3"
    return [
        f"identity: {auth_url}",
        ensure_account(manager, config, ADMIN, "admin", auth_url),
        ensure_account(manager, config, DEMO, "member", auth_url),
    ]
