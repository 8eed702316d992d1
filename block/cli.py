"""``soko volume``: cinderclient's verbs over the block API.

Where to connect, first found wins (as openstack-client and cinderclient):

1. a token and the volume endpoint: ``--os-token``/``$OS_TOKEN`` with
   ``--os-url``/``$SOKO_BLOCK_URL`` (the endpoint includes the project, as in the catalog:
   ``http://127.0.0.1:8776/v3/<project_id>``);
2. otherwise a password login through identity (``OS_AUTH_URL``, ``OS_USERNAME``,
   ``OS_PASSWORD``, ``OS_PROJECT_NAME``, or the all-in-one's saved admin credentials in
   the data dir), taking the ``volumev3`` endpoint from the token's catalog.

Commands that start a change wait for it to settle (with a spinner) unless ``--no-wait``.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import requests

from soko.common.cli.login import login_options
from soko.common.cli.output import emit_record, emit_rows, format_option

TRANSITIONAL = ("creating", "attaching", "detaching", "extending", "deleting", "downloading",
                "uploading")
LIST_COLUMNS = ["id", "name", "status", "size", "attached_to"]


class BlockClient:
    """The block endpoint and a token, resolved on first use so ``--help`` needs neither.
    A subclass for another service's API names its catalog type and URL option."""

    catalog_type = "volumev3"
    url_option = "--os-url (or $SOKO_BLOCK_URL)"

    def __init__(self, url, token, data_dir: Path, identity_options: dict):
        self.url, self.token = (url.rstrip("/") if url else None), token
        self.data_dir = data_dir
        self.identity_options = identity_options
        self.http = requests.Session()

    def resolve(self) -> None:
        if self.url and self.token:
            return
        from soko.identity.cli import Connection
        from soko.identity.client import IdentityClient, IdentityClientError

        conn = Connection(self.data_dir, **self.identity_options)
        auth_url, username, password, project = conn.resolve()
        try:
            token, body = IdentityClient(auth_url, username=username, password=password,
                                         project_name=project).issue_token()
        except IdentityClientError as exc:
            raise click.ClickException(f"login failed: {exc}") from None
        self.token = self.token or token
        if not self.url:
            self.url = catalog_endpoint(body["token"].get("catalog", []), self.catalog_type,
                                        self.url_option)

    def call(self, method: str, path: str, *, ok_missing: bool = False, **kwargs):
        """A JSON call: the decoded body (None for a 404 when ``ok_missing``)."""
        resp = self.request(method, path, ok_missing=ok_missing, **kwargs)
        if resp is None:
            return None
        return resp.json() if resp.content else {}

    def request(self, method: str, path: str, *, ok_missing: bool = False, timeout=60,
                headers: dict | None = None, **kwargs) -> requests.Response | None:
        """The response; a 4xx/5xx or no answer becomes a ClickException with the reason."""
        self.resolve()
        try:
            resp = self.http.request(method, self.url + path, timeout=timeout,
                                     headers={"X-Auth-Token": self.token, **(headers or {})},
                                     **kwargs)
        except requests.RequestException as exc:
            raise click.ClickException(
                f"cannot reach {self.url}: {exc.__class__.__name__}") from None
        if ok_missing and resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            try:
                message = resp.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = resp.reason
            raise click.ClickException(f"{resp.status_code}: {message}")
        return resp

    def find(self, ref: str, kind: str = "volume") -> dict:
        """A volume (or ``kind``) by id, or by name when exactly one has it."""
        found = self.call("GET", f"/{kind}s/{ref}", ok_missing=True)
        if found is not None:
            return found[kind]
        named = self.call("GET", f"/{kind}s/detail", params={"name": ref})[f"{kind}s"]
        if len(named) == 1:
            return named[0]
        if not named:
            raise click.ClickException(f"no {kind} with id or name {ref!r}")
        raise click.ClickException(f"{len(named)} {kind}s are named {ref!r}; use the id")

    def wait(self, ref_id: str, *, gone: bool = False, timeout: float = 300,
             kind: str = "volume") -> dict | None:
        """Polls until the volume (or ``kind``) leaves its transitional status (or, ``gone``,
        vanishes)."""
        from rich.console import Console

        deadline = time.monotonic() + timeout
        with Console(stderr=True).status(f"waiting for {kind} {ref_id}..."):
            while True:
                found = self.call("GET", f"/{kind}s/{ref_id}", ok_missing=True)
                item = found[kind] if found else None
                if item is None or (not gone and item["status"] not in TRANSITIONAL):
                    return item
                if time.monotonic() > deadline:
                    raise click.ClickException(f"{kind} {ref_id} is still "
                                               f"{item['status']} after {timeout:.0f} s")
                time.sleep(0.5)


def catalog_endpoint(catalog: list[dict], kind: str, url_option: str) -> str:
    for entry in catalog:
        if entry.get("type") == kind:
            for endpoint in entry["endpoints"]:
                if endpoint["interface"] == "public":
                    return endpoint["url"].rstrip("/")
    raise click.ClickException(f"the token's catalog has no {kind} endpoint; give {url_option}")


def row(volume: dict) -> dict:
    attached = [a.get("initiator") or a.get("device")  # iSCSI, or a local loop device
                for a in volume.get("attachments", [])]
    return {**volume, "attached_to": ", ".join(filter(None, attached))}


def record(volume: dict) -> dict:
    return {k: v for k, v in row(volume).items() if k not in ("links", "attachments")}


def parse_metadata(pairs: tuple[str, ...]) -> dict[str, str]:
    metadata = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--metadata")
        metadata[key] = value
    return metadata


no_wait_option = click.option("--no-wait", is_flag=True, help="Return at once; don't poll.")
metadata_option = click.option("--metadata", multiple=True, metavar="KEY=VALUE",
                               help="Metadata item (repeatable).")


@click.group()
@login_options(BlockClient, "SOKO_BLOCK_URL",
               "Volume endpoint with project, e.g. http://127.0.0.1:8776/v3/<project>")
def volume():
    """Block volumes: create, attach over iSCSI, extend, delete."""


pass_client = click.make_pass_decorator(BlockClient)


@volume.command("create")
@click.argument("size", type=click.IntRange(min=1), metavar="SIZE")
@click.option("--name")
@click.option("--description")
@click.option("--snapshot-id", help="Create from this snapshot.")
@click.option("--source-volid", help="Clone this volume (copy-on-write, instant).")
@click.option("--image-id", help="Fill it from this image (it becomes bootable).")
@metadata_option
@no_wait_option
@format_option
@pass_client
def create(client, size, name, description, snapshot_id, source_volid, image_id, metadata,
           no_wait, fmt):
    """Create a volume of SIZE GiB."""
    spec = {"size": size, "name": name, "description": description,
            "snapshot_id": snapshot_id, "source_volid": source_volid, "imageRef": image_id,
            "metadata": parse_metadata(metadata)}
    created = client.call("POST", "/volumes", json={"volume": {
        k: v for k, v in spec.items() if v is not None}})["volume"]
    if not no_wait:
        created = client.wait(created["id"])
        if created["status"] == "error":
            raise click.ClickException(f"volume {created['id']} could not be filled (the block "
                                       "service's log says why); delete it and try again")
    emit_record(record(created), fmt)


@volume.command("upload-to-image")
@click.argument("volume_ref", metavar="VOLUME")
@click.argument("image_name", metavar="NAME")
@click.option("--disk-format", type=click.Choice(["raw", "qcow2"]), default="raw",
              show_default=True)
@click.option("--force", is_flag=True,
              help="An attached volume: upload a crash-consistent snapshot of it.")
@no_wait_option
@format_option
@pass_client
def upload_to_image(client, volume_ref, image_name, disk_format, force, no_wait, fmt):
    """Upload a volume as a new image NAME (`soko image show` follows it)."""
    found = client.find(volume_ref)
    info = client.call("POST", f"/volumes/{found['id']}/action", json={
        "os-volume_upload_image": {"image_name": image_name, "disk_format": disk_format,
                                   "force": force}})
    info = info["os-volume_upload_image"]
    if not no_wait:
        info["status"] = client.wait(found["id"])["status"]
    emit_record(info, fmt)


@volume.command("list")
@click.option("--all-projects", is_flag=True, help="Every project's volumes (admin).")
@click.option("--name")
@click.option("--status")
@click.option("--limit", type=click.IntRange(min=1))
@click.option("--marker", help="List after this volume id.")
@format_option
@pass_client
def list_volumes(client, all_projects, name, status, limit, marker, fmt):
    """List volumes, newest first."""
    params = list_query(all_projects, name=name, status=status, limit=limit, marker=marker)
    volumes = client.call("GET", "/volumes/detail", params=params)["volumes"]
    emit_rows([row(v) for v in volumes], LIST_COLUMNS, fmt)


@volume.command("show")
@click.argument("volume_ref", metavar="VOLUME")
@format_option
@pass_client
def show(client, volume_ref, fmt):
    """Show one volume (by id or name)."""
    emit_record(record(client.find(volume_ref)), fmt)


@volume.command("delete")
@click.argument("volume_refs", metavar="VOLUME...", nargs=-1, required=True)
@no_wait_option
@pass_client
def delete(client, volume_refs, no_wait):
    """Delete volumes (they must be detached)."""
    delete_each(client, volume_refs, no_wait)


def list_query(all_projects: bool, **filters) -> dict:
    """A listing's query parameters: the filters given, and all_tenants for admins."""
    return {k: v for k, v in dict(filters, all_tenants=1 if all_projects else None).items()
            if v is not None}


def delete_each(client, refs: tuple[str, ...], no_wait: bool, kind: str = "volume") -> None:
    for ref in refs:
        found = client.find(ref, kind)
        client.call("DELETE", f"/{kind}s/{found['id']}")
        if not no_wait:
            client.wait(found["id"], gone=True, kind=kind)
        click.echo(f"deleted {kind} {found['id']}")


@volume.command("extend")
@click.argument("volume_ref", metavar="VOLUME")
@click.argument("new_size", type=click.IntRange(min=1), metavar="NEW_SIZE")
@no_wait_option
@format_option
@pass_client
def extend(client, volume_ref, new_size, no_wait, fmt):
    """Grow a detached volume to NEW_SIZE GiB."""
    found = client.find(volume_ref)
    client.call("POST", f"/volumes/{found['id']}/action",
                json={"os-extend": {"new_size": new_size}})
    emit_record(record(found if no_wait else client.wait(found["id"])), fmt)


def update_volume(client, volume_ref, values: dict, fmt) -> None:
    found = client.find(volume_ref)
    updated = client.call("PUT", f"/volumes/{found['id']}", json={"volume": values})["volume"]
    emit_record(record(updated), fmt)


@volume.command("rename")
@click.argument("volume_ref", metavar="VOLUME")
@click.argument("new_name")
@format_option
@pass_client
def rename(client, volume_ref, new_name, fmt):
    """Give a volume a new name."""
    update_volume(client, volume_ref, {"name": new_name}, fmt)


@volume.command("update")
@click.argument("volume_ref", metavar="VOLUME")
@click.option("--name")
@click.option("--description")
@metadata_option
@format_option
@pass_client
def update(client, volume_ref, name, description, metadata, fmt):
    """Change name, description or metadata (metadata given replaces the old)."""
    values = {k: v for k, v in dict(name=name, description=description).items()
              if v is not None}
    if metadata:
        values["metadata"] = parse_metadata(metadata)
    if not values:
        raise click.UsageError("give --name, --description or --metadata")
    update_volume(client, volume_ref, values, fmt)


@volume.command("attach")
@click.argument("volume_ref", metavar="VOLUME")
@click.option("--initiator", required=True, metavar="IQN",
              help="The iSCSI name of the host that will log in (the only one allowed).")
@format_option
@pass_client
def attach(client, volume_ref, initiator, fmt):
    """Export a volume to one initiator; prints the portal, target and CHAP credentials."""
    found = client.find(volume_ref)
    info = client.call("POST", f"/volumes/{found['id']}/action", json={
        "os-initialize_connection": {"connector": {"initiator": initiator}}})
    emit_record(info["connection_info"]["data"], fmt)


@volume.command("detach")
@click.argument("volume_ref", metavar="VOLUME")
@no_wait_option
@pass_client
def detach(client, volume_ref, no_wait):
    """Remove a volume's export (its target, ACL and credentials)."""
    found = client.find(volume_ref)
    client.call("POST", f"/volumes/{found['id']}/action", json={"os-detach": {}})
    if not no_wait:
        client.wait(found["id"])
    click.echo(f"detached volume {found['id']}")


@volume.command("quota-show")
@click.argument("project_id", required=False)
@format_option
@pass_client
def quota_show(client, project_id, fmt):
    """Limits and usage of a project (your own by default)."""
    client.resolve()
    project_id = project_id or client.url.rsplit("/", 1)[1]
    quota = client.call("GET", f"/os-quota-sets/{project_id}", params={"usage": "true"})
    rows = [{"resource": name, **item} for name, item in quota["quota_set"].items()
            if isinstance(item, dict)]
    emit_rows(rows, ["resource", "limit", "in_use", "reserved"], fmt)




# -- snapshots and local attach -------------------------------------------------------

SNAPSHOT_COLUMNS = ["id", "name", "status", "size", "volume_id", "created_at"]


def snapshot_record(snapshot: dict) -> dict:
    local = snapshot.get("local_attachment")
    return {**{k: v for k, v in snapshot.items() if k not in ("links", "local_attachment")},
            "local_device": local["device"] if local else None}


@volume.command("snapshot-create")
@click.argument("volume_ref", metavar="VOLUME")
@click.option("--force", is_flag=True, help="Snapshot an in-use volume (with --quiesce for a "
                                            "consistent copy).")
@click.option("--name")
@click.option("--description")
@click.option("--quiesce", is_flag=True,
              help="Run the volume's default quiesce plan around the copy (from the "
                   "service's config or its quiesce_plan metadata).")
@click.option("--quiesce-plan", metavar="PLAN",
              help="Run this quiesce plan (named in the service's config) around the copy.")
@metadata_option
@no_wait_option
@format_option
@pass_client
def snapshot_create(client, volume_ref, force, name, description, quiesce, quiesce_plan,
                    metadata, no_wait, fmt):
    """Take an O(1) snapshot of VOLUME (frozen for a moment if --quiesce)."""
    found = client.find(volume_ref)
    spec = {"volume_id": found["id"], "force": force, "name": name,
            "description": description, "metadata": parse_metadata(metadata),
            "quiesce": quiesce_plan or quiesce or None}
    snapshot = client.call("POST", "/snapshots", json={"snapshot": {
        k: v for k, v in spec.items() if v is not None}})["snapshot"]
    if not no_wait:
        snapshot = client.wait(snapshot["id"], kind="snapshot")
    if snapshot["status"] == "error":
        raise click.ClickException(f"snapshot {snapshot['id']} is in error: "
                                   f"{snapshot['metadata'].get('error', 'see the service log')}; "
                                   "delete it and try again")
    emit_record(snapshot_record(snapshot), fmt)


@volume.command("snapshot-list")
@click.option("--all-projects", is_flag=True, help="Every project's snapshots (admin).")
@click.option("--volume-id", help="Only this volume's snapshots.")
@click.option("--name")
@click.option("--status")
@click.option("--limit", type=click.IntRange(min=1))
@click.option("--marker", help="List after this snapshot id.")
@format_option
@pass_client
def snapshot_list(client, all_projects, volume_id, name, status, limit, marker, fmt):
    """List snapshots, newest first."""
    params = list_query(all_projects, volume_id=volume_id, name=name, status=status,
                        limit=limit, marker=marker)
    snapshots = client.call("GET", "/snapshots/detail", params=params)["snapshots"]
    emit_rows(snapshots, SNAPSHOT_COLUMNS, fmt)


@volume.command("snapshot-show")
@click.argument("snapshot_ref", metavar="SNAPSHOT")
@format_option
@pass_client
def snapshot_show(client, snapshot_ref, fmt):
    """Show one snapshot (by id or name), with its freeze window if it was quiesced."""
    emit_record(snapshot_record(client.find(snapshot_ref, "snapshot")), fmt)


@volume.command("snapshot-delete")
@click.argument("snapshot_refs", metavar="SNAPSHOT...", nargs=-1, required=True)
@no_wait_option
@pass_client
def snapshot_delete(client, snapshot_refs, no_wait):
    """Delete snapshots (they must not be locally attached)."""
    delete_each(client, snapshot_refs, no_wait, "snapshot")


def local_target(client, ref: str | None, snapshot: str | None) -> str:
    """The action URL of VOLUME or of --snapshot SNAPSHOT (exactly one of them)."""
    if (ref is None) == (snapshot is None):
        raise click.UsageError("give a VOLUME or --snapshot SNAPSHOT")
    if snapshot is not None:
        return f"/snapshots/{client.find(snapshot, 'snapshot')['id']}/action"
    return f"/volumes/{client.find(ref)['id']}/action"


@volume.command("local-attach")
@click.argument("volume_ref", metavar="[VOLUME]", required=False)
@click.option("--snapshot", metavar="SNAPSHOT", help="Map this snapshot, read-only.")
@format_option
@pass_client
def local_attach(client, volume_ref, snapshot, fmt):
    """Map a volume (or --snapshot, read-only) to a loop device on the storage host and
    print the device. Run on the host that holds the pool; local-detach undoes it. Needs
    an admin unless the service's [block] local_attach_role says otherwise."""
    info = client.call("POST", local_target(client, volume_ref, snapshot),
                       json={"os-local_attach": {}})["local_attachment"]
    if fmt == "json":
        emit_record(info, fmt)
    else:
        click.echo(info["device"])


@volume.command("local-detach")
@click.argument("volume_ref", metavar="[VOLUME]", required=False)
@click.option("--snapshot", metavar="SNAPSHOT", help="Unmap this snapshot.")
@pass_client
def local_detach(client, volume_ref, snapshot):
    """Remove a local attachment (unmount the device first)."""
    client.call("POST", local_target(client, volume_ref, snapshot), json={"os-local_detach": {}})
    click.echo("detached")


# The backup-* commands register themselves on the group above.
from soko.block.backups import cli as backup_cli  # noqa: E402, F401
