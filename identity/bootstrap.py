"""``soko up``'s first-start step for identity: keys, schema, admin and demo accounts, and
(for the services that call another as themselves, ``ensure_service_user``) service users.

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


SERVICE = "service"  # devstack's project for the services' users, and their role


def ensure_service_user(config: Config, name: str, password: str,
                        project: str = SERVICE) -> str:
    """A service's user (compute's ``nova``) in project ``project`` with the ``service``
    role, as devstack makes them; its password is the service's config secret, so it is
    set again when that changed. Idempotent: every ``soko up`` calls it, so a data dir
    made before the user existed gets it too."""
    manager = IdentityManager.from_config(config)
    if not manager.list_projects(name=project):
        manager.create_project(project, description="the services' users (soko up)")
    if not manager.list_users(name=name):
        manager.create_user(name, password, default_project=project)
        made = "made"
    elif not manager.password_is(name, password):
        manager.update_user(manager.get_user(name)["id"], password=password)
        made = "password updated"
    else:
        made = "existing"
    if not manager.has_role(project, name, SERVICE):
        manager.grant_role(project, name, SERVICE)
    return f"identity: service user {name} in project {project} ({made})"


def bootstrap(config: Config) -> list[str]:
    manager = IdentityManager.from_config(config)  # creates the schema and the keys
    auth_url = advertised_endpoint(identity_section(config)) + "/v3"
    return [
        f"identity: {auth_url}",
        ensure_account(manager, config, ADMIN, "admin", auth_url),
        ensure_account(manager, config, DEMO, "member", auth_url),
    ]
