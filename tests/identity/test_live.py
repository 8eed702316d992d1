"""soko-identity as a real gunicorn service (2 workers): keystoneauth1, the CLI, tempauth
over HTTP, revocation seen by every worker, and a log without passwords."""

from __future__ import annotations

import json

import pytest
import requests
from click.testing import CliRunner
from keystoneauth1 import session as ks_session
from keystoneauth1.exceptions import Unauthorized as KsUnauthorized
from keystoneauth1.identity import generic, v3

from soko.common import services
from soko.identity.bootstrap import bootstrap, credentials_path, read_credentials
from soko.tools.cli import cli
from tests.support import free_port, running_service

WRONG_PASSWORD = "definitely-wrong-password-42"
NEW_USER_PASSWORD = "erin-secret-password-7"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("live") / "soko"
    data_dir.mkdir()
    port = free_port()
    (data_dir / "soko.toml").write_text(
        f"[identity]\nport = {port}\nworkers = 2\nscrypt_log2_n = 10\n"
        # A long refresh: a worker that did not handle a revocation learns of it only by
        # asking the table (what identity itself must do), never from its periodic re-read.
        "revocation_refresh = 30\nrevocation_max_staleness = 60\nlockout_failures = 3\n"
        "lockout_seconds = 30\n"
    )
    config = services.load(None, data_dir)
    lines = bootstrap(config)
    creds = read_credentials(credentials_path(config))
    with running_service("identity", config) as endpoint:
        yield {"endpoint": endpoint, "config": config, "creds": creds, "lines": lines,
               "data_dir": data_dir, "port": port}


def admin_auth(live, plugin=v3.Password, auth_url=None):
    creds = live["creds"]
    return plugin(auth_url=auth_url or creds["OS_AUTH_URL"], username="admin",
                  password=creds["OS_PASSWORD"], project_name="admin",
                  user_domain_name="Default", project_domain_name="Default")


def test_keystoneauth_v3_password_gets_token_and_catalog(live):
    auth = admin_auth(live)
    sess = ks_session.Session(auth=auth)
    assert sess.get_token()
    access = auth.get_access(sess)
    assert access.username == "admin" and access.project_name == "admin"
    assert set(access.role_names) == {"admin", "member", "reader"}
    assert access.service_catalog.url_for(service_type="identity", interface="public") == \
        f"{live['endpoint']}/v3"
    # the catalog is usable: keystoneauth finds the identity endpoint and calls it
    projects = sess.get("/projects", endpoint_filter={"service_type": "identity",
                                                      "interface": "public"}).json()
    assert {"admin", "demo"} <= {p["name"] for p in projects["projects"]}


def test_keystoneauth_generic_plugin_discovers_v3(live):
    auth = admin_auth(live, plugin=generic.Password, auth_url=live["endpoint"])
    sess = ks_session.Session(auth=auth)
    assert sess.get_token() and sess.get_project_id()


def test_keystoneauth_wrong_password_is_unauthorized(live):
    creds = live["creds"]
    auth = v3.Password(auth_url=creds["OS_AUTH_URL"], username="demo", password=WRONG_PASSWORD,
                       project_name="demo", user_domain_name="Default",
                       project_domain_name="Default")
    with pytest.raises(KsUnauthorized):
        ks_session.Session(auth=auth).get_token()


def test_revocation_holds_at_once_on_every_worker(live):
    login = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"},
        "password": live["creds"]["OS_PASSWORD"]}}}}}
    base = live["endpoint"]
    token = requests.post(f"{base}/v3/auth/tokens", json=login).headers["X-Subject-Token"]
    headers = {"X-Auth-Token": token}
    for _ in range(6):  # warm both workers' revocation lists
        assert requests.get(f"{base}/v3/auth/projects", headers=headers).status_code == 200
    deleted = requests.delete(f"{base}/v3/auth/tokens",
                              headers={**headers, "X-Subject-Token": token})
    assert deleted.status_code == 204
    # No wait: identity asks the revocation table itself (issue 13 saw 1.9 s here).
    statuses = {requests.get(f"{base}/v3/auth/projects", headers=headers).status_code
                for _ in range(20)}
    assert statuses == {401}


def run_cli(live, *args, env=None):
    unset = {k: None for k in ("OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME",
                               "SOKO_DATA_DIR")}
    result = CliRunner().invoke(cli, ["identity", "--data-dir", str(live["data_dir"]), *args],
                                env={**unset, **(env or {})}, catch_exceptions=False)
    return result


def test_cli_token_issue_from_the_data_dir(live):
    result = run_cli(live, "token", "issue", "--format", "json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["roles"] == "admin,member,reader" and record["id"]
    assert {"type": "identity", "name": "keystone", "url": f"{live['endpoint']}/v3"} in \
        record["catalog"]
    table = run_cli(live, "token", "issue")
    assert table.exit_code == 0 and "keystone" in table.output
    assert table.output.startswith("token: gAAAA")


def test_cli_project_user_role_workflow_then_env_credentials(live):
    assert run_cli(live, "project", "create", "cli-proj", "--description", "made by cli"
                   ).exit_code == 0
    created = run_cli(live, "user", "create", "erin", "--project", "cli-proj", "--format",
                      "json", "--password", NEW_USER_PASSWORD)
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["name"] == "erin"
    added = run_cli(live, "role", "add", "member", "--project", "cli-proj", "--user", "erin")
    assert added.exit_code == 0 and "has role member" in added.output
    projects = json.loads(run_cli(live, "project", "list", "--format", "json").output)
    assert "cli-proj" in [p["name"] for p in projects]
    users = run_cli(live, "user", "list")
    assert "erin" in users.output
    as_erin = run_cli(live, "token", "issue", "--format", "json", env={
        "OS_AUTH_URL": live["creds"]["OS_AUTH_URL"], "OS_USERNAME": "erin",
        "OS_PASSWORD": NEW_USER_PASSWORD, "OS_PROJECT_NAME": "cli-proj"})
    assert as_erin.exit_code == 0, as_erin.output
    assert json.loads(as_erin.output)["project_name"] == "cli-proj"
    denied = run_cli(live, "project", "list", env={
        "OS_AUTH_URL": live["creds"]["OS_AUTH_URL"], "OS_USERNAME": "erin",
        "OS_PASSWORD": NEW_USER_PASSWORD, "OS_PROJECT_NAME": "cli-proj"})
    assert denied.exit_code != 0 and "'admin' role" in denied.output
    wrong = run_cli(live, "token", "issue", env={
        "OS_AUTH_URL": live["creds"]["OS_AUTH_URL"], "OS_USERNAME": "erin",
        "OS_PASSWORD": WRONG_PASSWORD, "OS_PROJECT_NAME": "cli-proj"})
    assert wrong.exit_code != 0 and "password is wrong" in wrong.output


def test_tempauth_backed_by_the_remote_identity_service(live):
    import falcon.testing

    from soko.common.app import make_base_app
    from soko.identity.client import IdentityClient
    from soko.identity.tempauth import TempAuth

    app = make_base_app()
    app.add_route("/auth/v1.0", TempAuth(IdentityClient(live["endpoint"]), "http://proxy:8080"))
    client = falcon.testing.TestClient(app)
    creds = read_credentials(credentials_path(live["config"], "demo"))
    resp = client.simulate_get("/auth/v1.0", headers={
        "X-Auth-User": "demo:demo", "X-Auth-Key": creds["OS_PASSWORD"]})
    assert resp.status_code == 200
    assert resp.headers["X-Storage-Url"].startswith("http://proxy:8080/v1/AUTH_")
    bad = client.simulate_get("/auth/v1.0", headers={
        "X-Auth-User": "demo:demo", "X-Auth-Key": WRONG_PASSWORD})
    assert bad.status_code == 401


def test_service_log_never_holds_a_password(live):
    """Runs last in this module: by now every test above has sent its passwords."""
    log_text = (live["data_dir"] / f"identity-{live['port']}.log").read_text()
    assert "/v3/auth/tokens" in log_text  # the access log did record the logins
    for secret in (live["creds"]["OS_PASSWORD"], WRONG_PASSWORD, NEW_USER_PASSWORD):
        assert secret not in log_text


def test_cli_ec2_credentials(live):
    made = run_cli(live, "ec2-credentials", "create", "--format", "json")
    assert made.exit_code == 0, made.output
    cred = json.loads(made.output)
    assert cred["access"] and cred["secret"] and cred["project_id"]
    listed = json.loads(run_cli(live, "ec2-credentials", "list", "--format", "json").output)
    assert cred["access"] in [c["access"] for c in listed]
    gone = run_cli(live, "ec2-credentials", "delete", cred["access"])
    assert gone.exit_code == 0, gone.output
    listed = json.loads(run_cli(live, "ec2-credentials", "list", "--format", "json").output)
    assert cred["access"] not in [c["access"] for c in listed]
