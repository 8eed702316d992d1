"""``soko up``'s identity bootstrap, saved credentials, and the CLI's local commands."""

from __future__ import annotations

import os
import stat

from click.testing import CliRunner

from soko.identity.bootstrap import (
    bootstrap,
    credentials_path,
    read_credentials,
    write_credentials,
)
from soko.identity.manager import IdentityManager
from soko.identity.service import IdentityConfig, key_dir
from soko.tools.cli import cli
from tests.identity.conftest import identity_config


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_bootstrap_creates_admin_and_demo_once(data_dir):
    config = identity_config(data_dir)
    first = bootstrap(config)
    admin = read_credentials(credentials_path(config, "admin"))
    demo = read_credentials(credentials_path(config, "demo"))
    assert admin["OS_USERNAME"] == "admin" and admin["OS_PROJECT_NAME"] == "admin"
    assert admin["OS_AUTH_URL"] == "http://127.0.0.1:5000/v3"
    assert demo["OS_USERNAME"] == "demo" and len(demo["OS_PASSWORD"]) >= 20
    assert admin["OS_PASSWORD"] in "\n".join(first) and demo["OS_PASSWORD"] in "\n".join(first)
    for path in (credentials_path(config, "admin"), credentials_path(config, "demo")):
        assert mode(path) == 0o600
    assert mode(data_dir / "identity") == 0o700
    assert mode(key_dir(config)) == 0o700

    second = bootstrap(config)
    assert admin["OS_PASSWORD"] not in "\n".join(second)  # printed once
    assert read_credentials(credentials_path(config, "admin")) == admin

    manager = IdentityManager.from_config(config)
    token = manager.authenticate(user_name="admin", password=admin["OS_PASSWORD"],
                                 project_name="admin")
    assert token.payload.roles == ("admin", "member", "reader")
    demo_token = manager.authenticate(user_name="demo", password=demo["OS_PASSWORD"])
    assert demo_token.payload.project_name == "demo"
    assert demo_token.payload.roles == ("member", "reader")


def test_credentials_file_round_trips_awkward_values(tmp_path):
    path = tmp_path / "creds"
    write_credentials(path, "http://h:5000/v3", "user", "it's a $ecret \"pw\"", "proj")
    values = read_credentials(path)
    assert values["OS_PASSWORD"] == "it's a $ecret \"pw\""
    assert values["OS_IDENTITY_API_VERSION"] == "3"


def test_config_validation_names_the_key():
    import pytest

    from soko.common.config import ConfigError

    for bad in ({"token_ttl": 5}, {"max_active_keys": 2}, {"revocation_refresh": 0},
                {"scrypt_log2_n": 30}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            IdentityConfig(**bad).validate()


def invoke(data_dir, *args):
    env = {k: None for k in ("OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME")}
    return CliRunner().invoke(cli, ["identity", "--data-dir", str(data_dir), *args], env=env)


def test_cli_without_credentials_says_where_it_looked(data_dir):
    result = invoke(data_dir, "project", "list")
    assert result.exit_code != 0
    assert "OS_USERNAME" in result.output and "admin-credentials" in result.output


def test_cli_cannot_reach_the_server(data_dir):
    config = identity_config(data_dir)
    bootstrap(config)
    (data_dir / "soko.toml").write_text("[identity]\nport = 1\n")
    result = invoke(data_dir, "token", "issue")
    assert result.exit_code != 0 and "cannot reach http://127.0.0.1:1" in result.output


def test_cli_key_setup_and_rotation(data_dir):
    setup = invoke(data_dir, "keys", "setup")
    assert setup.exit_code == 0 and "created" in setup.output
    rotated = invoke(data_dir, "keys", "rotate")
    assert rotated.exit_code == 0 and "new primary key 2" in rotated.output
    assert sorted(os.listdir(data_dir / "identity" / "fernet-keys")) == [".lock", "0", "1", "2"]


def test_compute_service_user_comes_to_an_older_data_dir_and_logs_in(data_dir):
    """A data dir an older release made (admin and demo, no service user): the next
    ``soko up`` makes compute's ``nova`` in project ``service`` with the ``service`` role,
    its password the [compute] secret (a 0600 file unless configured); later runs keep it,
    and a password changed in soko.toml is set again. Compute then logs in over HTTP."""
    from soko.common.config import Config
    from soko.compute.clients import ServiceCredential
    from soko.compute.service import ComputeConfig
    from soko.compute.wiring import SERVICE_PASSWORD_FILE, service_credential
    from soko.compute.wiring import bootstrap as compute_bootstrap
    from soko.identity.api import make_app
    from soko.identity.tokens import FernetTokenValidator
    from tests.support import served

    older = identity_config(data_dir)
    bootstrap(older)

    def with_compute(**settings) -> Config:
        return Config(data_dir=data_dir, sections={**older.sections,
                                                   "compute": ComputeConfig(**settings)})

    config = with_compute()
    assert compute_bootstrap(config) == [
        "identity: service user nova in project service (made)"]
    password = (data_dir / SERVICE_PASSWORD_FILE).read_text()
    assert mode(data_dir / SERVICE_PASSWORD_FILE) == 0o600 and len(password) >= 32
    assert compute_bootstrap(config)[0].endswith("(existing)")
    manager = IdentityManager.from_config(config)
    with served(make_app(config, manager=manager)) as url:
        token = ServiceCredential(url, "nova", password, "service").token()
        auth = FernetTokenValidator.from_config(config).validate(token)
        assert (auth.project_name, auth.roles) == ("service", frozenset({"service"}))

        changed = with_compute(service_password="set-in-soko-toml-0123456789")
        assert compute_bootstrap(changed)[0].endswith("(password updated)")
        config.sections["identity"].port = int(url.rsplit(":", 1)[1])
        credential = service_credential(changed)
        assert credential.password == "set-in-soko-toml-0123456789"
        assert credential.token() != token
    assert [u["name"] for u in manager.list_users(name="nova")] == ["nova"]
