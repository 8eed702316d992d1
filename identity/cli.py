"""``soko identity``: projects, users, roles and tokens over the identity API.

Where to connect and as whom, first found wins (as openstack-client):

1. ``--os-auth-url/--os-username/--os-password/--os-project-name``;
2. the ``OS_AUTH_URL``, ``OS_USERNAME``, ``OS_PASSWORD``, ``OS_PROJECT_NAME`` variables;
3. for the all-in-one, the data dir (``--data-dir``, ``$SOKO_DATA_DIR``, ``.soko``): the
   credentials ``soko up`` saved in ``identity/admin-credentials`` and the identity
   endpoint from ``soko.toml``.

User name, password and project are taken together from one source, never mixed.
``keys setup`` and ``keys rotate`` work on the local key repository, with no server.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from soko.common.cli.output import emit_record, emit_rows, format_option
from soko.identity.roles import ROLES

DEFAULT_AUTH_URL = "http://127.0.0.1:5000/v3"


class Connection:
    """Resolved lazily, so ``--help`` and the local commands need no credentials."""

    def __init__(self, data_dir: Path, auth_url, username, password, project_name):
        self.data_dir = data_dir
        self.given = (auth_url, username, password, project_name)
        self._client = None

    def config(self):
        from soko.common import services
        from soko.common.config import ConfigError

        try:
            return services.load(None, self.data_dir)
        except ConfigError as exc:
            raise click.ClickException(f"bad configuration: {exc}") from None

    def client(self):
        if self._client is None:
            from soko.identity.client import IdentityClient

            auth_url, username, password, project = self.resolve()
            self._client = IdentityClient(auth_url, username=username, password=password,
                                          project_name=project)
        return self._client

    def resolve(self) -> tuple[str, str, str, str | None]:
        auth_url, username, password, project = self.given
        saved = {}
        if not username:
            from soko.identity.bootstrap import read_credentials

            path = self.data_dir / "identity" / "admin-credentials"
            if not path.exists():
                raise click.ClickException(
                    "no credentials: set OS_USERNAME, OS_PASSWORD and OS_PROJECT_NAME (or "
                    "source an openrc file), or point --data-dir at a soko data dir "
                    f"(no {path})"
                )
            saved = read_credentials(path)
            username, password = saved.get("OS_USERNAME"), saved.get("OS_PASSWORD")
            project = saved.get("OS_PROJECT_NAME")
        if password is None:
            raise click.ClickException("no password: set OS_PASSWORD or --os-password")
        if not auth_url:
            auth_url = self.endpoint_from_config() or saved.get("OS_AUTH_URL") or \
                DEFAULT_AUTH_URL
        return auth_url, username, password, project

    def endpoint_from_config(self) -> str | None:
        if not (self.data_dir / "soko.toml").exists():
            return None
        from soko.identity.service import advertised_endpoint, identity_section

        return advertised_endpoint(identity_section(self.config())) + "/v3"

    def call(self, method: str, path: str, **kwargs):
        from soko.identity.client import IdentityClientError

        try:
            resp = self.client().request(method, path, **kwargs)
        except IdentityClientError as exc:
            raise click.ClickException(str(exc)) from None
        return resp.json() if resp.content else {}

    def lookup(self, collection: str, ref: str) -> dict:
        """A project or user by name or id."""
        found = self.call("GET", f"/v3/{collection}", params={"name": ref})[collection]
        if not found:
            try:
                return self.call("GET", f"/v3/{collection}/{ref}")[collection[:-1]]
            except click.ClickException:
                raise click.ClickException(f"no {collection[:-1]} named {ref!r}") from None
        return found[0]


@click.group()
@click.option("--os-auth-url", envvar="OS_AUTH_URL", help="Identity endpoint ($OS_AUTH_URL).")
@click.option("--os-username", envvar="OS_USERNAME", help="User name ($OS_USERNAME).")
@click.option("--os-password", envvar="OS_PASSWORD", help="Password ($OS_PASSWORD).")
@click.option("--os-project-name", envvar="OS_PROJECT_NAME",
              help="Project to scope to ($OS_PROJECT_NAME).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              default=lambda: os.environ.get("SOKO_DATA_DIR", ".soko"), show_default=".soko",
              help="The soko data dir (credentials and soko.toml of the all-in-one).")
@click.pass_context
def identity(ctx, os_auth_url, os_username, os_password, os_project_name, data_dir):
    """Projects, users, roles and tokens."""
    ctx.obj = Connection(data_dir.absolute(), os_auth_url, os_username, os_password,
                         os_project_name)


pass_conn = click.make_pass_decorator(Connection)

PROJECT_COLUMNS = ["id", "name", "enabled", "description"]
USER_COLUMNS = ["id", "name", "enabled", "default_project_id", "email"]


def strip_links(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "links"}


@identity.group()
def project():
    """Create, list and delete projects."""


@project.command("create")
@click.argument("name")
@click.option("--description", default="")
@click.option("--disable", is_flag=True, help="Create it disabled.")
@format_option
@pass_conn
def project_create(conn, name, description, disable, fmt):
    body = {"project": {"name": name, "description": description, "enabled": not disable}}
    emit_record(strip_links(conn.call("POST", "/v3/projects", json=body)["project"]), fmt)


@project.command("list")
@format_option
@pass_conn
def project_list(conn, fmt):
    projects = conn.call("GET", "/v3/projects")["projects"]
    emit_rows([strip_links(p) for p in projects], PROJECT_COLUMNS, fmt)


@project.command("delete")
@click.argument("project_ref", metavar="PROJECT")
@pass_conn
def project_delete(conn, project_ref):
    found = conn.lookup("projects", project_ref)
    conn.call("DELETE", f"/v3/projects/{found['id']}")
    click.echo(f"deleted project {found['name']} ({found['id']})")


@identity.group()
def user():
    """Create, list and delete users."""


@user.command("create")
@click.argument("name")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="Prompted for when not given (keeps it out of shell history).")
@click.option("--project", "project_ref", help="Default project (name or id).")
@click.option("--email", default="")
@format_option
@pass_conn
def user_create(conn, name, password, project_ref, email, fmt):
    body = {"user": {"name": name, "password": password, "email": email}}
    if project_ref:
        body["user"]["default_project_id"] = conn.lookup("projects", project_ref)["id"]
    emit_record(strip_links(conn.call("POST", "/v3/users", json=body)["user"]), fmt)


@user.command("list")
@format_option
@pass_conn
def user_list(conn, fmt):
    users = conn.call("GET", "/v3/users")["users"]
    emit_rows([strip_links(u) for u in users], USER_COLUMNS, fmt)


@user.command("delete")
@click.argument("user_ref", metavar="USER")
@pass_conn
def user_delete(conn, user_ref):
    found = conn.lookup("users", user_ref)
    conn.call("DELETE", f"/v3/users/{found['id']}")
    click.echo(f"deleted user {found['name']} ({found['id']})")


@identity.group()
def role():
    """Give and take roles (admin, member, reader; service, ResellerAdmin) on projects."""


def grant_path(conn, project_ref, user_ref, role_name):
    p, u = conn.lookup("projects", project_ref), conn.lookup("users", user_ref)
    return p, u, f"/v3/projects/{p['id']}/users/{u['id']}/roles/{role_name}"


ROLE_CHOICE = click.Choice(ROLES)


@role.command("add")
@click.argument("role_name", metavar="ROLE", type=ROLE_CHOICE)
@click.option("--project", "project_ref", required=True, help="Project name or id.")
@click.option("--user", "user_ref", required=True, help="User name or id.")
@pass_conn
def role_add(conn, role_name, project_ref, user_ref):
    p, u, path = grant_path(conn, project_ref, user_ref, role_name)
    conn.call("PUT", path)
    click.echo(f"user {u['name']} has role {role_name} on project {p['name']}")


@role.command("remove")
@click.argument("role_name", metavar="ROLE", type=ROLE_CHOICE)
@click.option("--project", "project_ref", required=True, help="Project name or id.")
@click.option("--user", "user_ref", required=True, help="User name or id.")
@pass_conn
def role_remove(conn, role_name, project_ref, user_ref):
    p, u, path = grant_path(conn, project_ref, user_ref, role_name)
    conn.call("DELETE", path)
    click.echo(f"user {u['name']} no longer has role {role_name} on project {p['name']}")


@role.command("list")
@click.option("--project", "project_ref", required=True, help="Project name or id.")
@click.option("--user", "user_ref", required=True, help="User name or id.")
@format_option
@pass_conn
def role_list(conn, project_ref, user_ref, fmt):
    p, u = conn.lookup("projects", project_ref), conn.lookup("users", user_ref)
    roles = conn.call("GET", f"/v3/projects/{p['id']}/users/{u['id']}/roles")["roles"]
    emit_rows([{"role": r["name"], "project": p["name"], "user": u["name"]} for r in roles],
              ["role", "project", "user"], fmt)


@identity.group()
def token():
    """Issue and revoke tokens."""


@token.command("issue")
@format_option
@pass_conn
def token_issue(conn, fmt):
    """Log in and print the token, its scope and the service catalog."""
    from soko.identity.client import IdentityClientError

    try:
        token_id, body = conn.client().issue_token()
    except IdentityClientError as exc:
        raise click.ClickException(str(exc)) from None
    t = body["token"]
    catalog = [
        {"type": s["type"], "name": s["name"], "url": e["url"]}
        for s in t.get("catalog", []) for e in s["endpoints"] if e["interface"] == "public"
    ]
    record = {"id": token_id, "expires": t["expires_at"], "project_id": t["project"]["id"],
              "project_name": t["project"]["name"], "user_id": t["user"]["id"],
              "roles": ",".join(r["name"] for r in t["roles"])}
    if fmt == "json":
        emit_record({**record, "catalog": catalog}, fmt)
        return
    # The token goes on a line of its own: a table cell would cut it to the terminal width.
    click.echo(f"token: {token_id}")
    emit_record({k: v for k, v in record.items() if k != "id"}, fmt)
    emit_rows(catalog, ["type", "name", "url"], fmt)


@token.command("revoke")
@click.argument("token_id", metavar="TOKEN")
@pass_conn
def token_revoke(conn, token_id):
    """Revoke TOKEN (your own, or any token as an admin)."""
    conn.call("DELETE", "/v3/auth/tokens", headers={"X-Subject-Token": token_id})
    click.echo("token revoked")


@identity.group("ec2-credentials")
def ec2_credentials():
    """EC2-style access/secret keys for the S3 API (yours, or any user's as an admin)."""


EC2_COLUMNS = ["access", "secret", "project_id", "user_id"]


def credential_owner(conn, user_ref) -> tuple[str, str]:
    """(user id, the token's project id): the named user, else the one logged in."""
    from soko.identity.client import IdentityClientError

    try:
        _, body = conn.client().issue_token()
    except IdentityClientError as exc:
        raise click.ClickException(str(exc)) from None
    user_id = conn.lookup("users", user_ref)["id"] if user_ref else body["token"]["user"]["id"]
    return user_id, body["token"]["project"]["id"]


def ec2_row(record: dict) -> dict:
    return {"access": record["access"], "secret": record["secret"],
            "project_id": record["tenant_id"], "user_id": record["user_id"]}


@ec2_credentials.command("create")
@click.option("--project", "project_ref", help="Project name or id (default: the login's).")
@click.option("--user", "user_ref", help="User name or id (default: yourself).")
@format_option
@pass_conn
def ec2_create(conn, project_ref, user_ref, fmt):
    user_id, project_id = credential_owner(conn, user_ref)
    if project_ref:
        project_id = conn.lookup("projects", project_ref)["id"]
    body = conn.call("POST", f"/v3/users/{user_id}/credentials/OS-EC2",
                     json={"tenant_id": project_id})
    emit_record(ec2_row(body["credential"]), fmt)


@ec2_credentials.command("list")
@click.option("--user", "user_ref", help="User name or id (default: yourself).")
@format_option
@pass_conn
def ec2_list(conn, user_ref, fmt):
    user_id, _ = credential_owner(conn, user_ref)
    body = conn.call("GET", f"/v3/users/{user_id}/credentials/OS-EC2")
    emit_rows([ec2_row(c) for c in body["credentials"]], EC2_COLUMNS, fmt)


@ec2_credentials.command("delete")
@click.argument("access")
@click.option("--user", "user_ref", help="User name or id (default: yourself).")
@pass_conn
def ec2_delete(conn, access, user_ref):
    user_id, _ = credential_owner(conn, user_ref)
    conn.call("DELETE", f"/v3/users/{user_id}/credentials/OS-EC2/{access}")
    click.echo(f"deleted ec2 credential {access}")


@identity.group()
def keys():
    """The local Fernet key repository (run on the identity host; copy to others)."""


def key_repository(conn):
    from soko.identity.keys import FernetKeyRepository
    from soko.identity.service import identity_section, key_dir

    config = conn.config()
    return FernetKeyRepository(key_dir(config),
                               max_active=identity_section(config).max_active_keys)


@keys.command("setup")
@pass_conn
def keys_setup(conn):
    """Create the key repository if it does not exist."""
    repo = key_repository(conn)
    created = repo.initialize()
    click.echo(f"{'created' if created else 'kept existing'} key repository {repo.path}")


@keys.command("rotate")
@pass_conn
def keys_rotate(conn):
    """Promote the staged key to primary and stage a new one (then copy to every host)."""
    repo = key_repository(conn)
    if not repo.numbers():
        raise click.ClickException(f"no key repository at {repo.path}; run `keys setup`")
    primary = repo.rotate()
    click.echo(f"new primary key {primary}; keys now {repo.numbers()} in {repo.path}")
