"""``soko image ...``: images for instances (glanceclient's verbs over the image API), and
the small self-booting test guest.

Connecting works as for ``soko volume``: ``--os-url``/``$SOKO_IMAGE_URL`` with a token, or
a password login whose catalog names the ``image`` endpoint. ``create`` checks the file
with ``qemu-img`` before it creates anything, streams it with a progress bar, and deletes
the record again if the upload fails, so a failed create leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import click
import requests
import xxhash
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from soko.block.cli import BlockClient
from soko.common.cli.login import login_options
from soko.common.cli.output import emit_record, emit_rows, format_option
from soko.image.formats import DISK_FORMATS, FormatError, probe_file
from soko.image.guest_builder import build_test_guest

LIST_COLUMNS = ["id", "name", "status", "visibility", "disk_format", "size"]
CHUNK = 1 << 20


class ImageClient(BlockClient):
    catalog_type = "image"
    url_option = "--os-url (or $SOKO_IMAGE_URL)"

    def find(self, ref: str) -> dict:
        """An image by id, or by name when exactly one visible image has it."""
        found = self.call("GET", f"/v2/images/{ref}", ok_missing=True)
        if found is not None:
            return found
        named = self.call("GET", "/v2/images", params={"name": ref})["images"]
        if len(named) == 1:
            return named[0]
        if not named:
            raise click.ClickException(f"no image with id or name {ref!r}")
        raise click.ClickException(f"{len(named)} images are named {ref!r}; use the id")

    def stream(self, method: str, path: str, **kwargs) -> requests.Response:
        """A data request: no time limit on the body, only on each wait for bytes."""
        return self.request(method, path, timeout=(10, 600), **kwargs)


def progress_bar() -> Progress:
    return Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), transient=True,
                    console=Console(stderr=True))


class ProgressFile:
    """A file that advances a progress bar as requests reads it (and tells its length, so
    the upload carries Content-Length)."""

    def __init__(self, f, progress, task):
        self.f, self.progress, self.task = f, progress, task
        self.length = os.fstat(f.fileno()).st_size

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(CHUNK if size is None or size < 0 else size)
        self.progress.advance(self.task, len(data))
        return data


@click.group()
@login_options(ImageClient, "SOKO_IMAGE_URL", "Image endpoint, e.g. http://127.0.0.1:9292")
def image() -> None:
    """Images for instances: disk images kept in the object store."""


pass_client = click.make_pass_decorator(ImageClient)
image.add_command(build_test_guest)


def record(found: dict) -> dict:
    return {k: v for k, v in found.items() if k not in ("self", "file", "schema", "tags")}


@image.command("create")
@click.argument("name")
@click.option("--file", "path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The disk image to upload.")
@click.option("--disk-format", required=True, type=click.Choice(DISK_FORMATS),
              help="What the file is; checked with qemu-img before anything is stored.")
@click.option("--public", is_flag=True, help="Offer it to every project (admins only).")
@format_option
@pass_client
def create(client, name, path, disk_format, public, fmt):
    """Upload a disk image as NAME."""
    try:
        probe_file(str(path), disk_format)
    except FormatError as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    created = client.call("POST", "/v2/images", json={
        "name": name, "disk_format": disk_format, "container_format": "bare",
        "visibility": "public" if public else "private"})
    try:
        with open(path, "rb") as f, progress_bar() as progress:
            task = progress.add_task(f"uploading {path.name}", total=os.fstat(f.fileno()).st_size)
            client.stream("PUT", f"/v2/images/{created['id']}/file",
                          data=ProgressFile(f, progress, task),
                          headers={"Content-Type": "application/octet-stream"})
    except BaseException:
        client.call("DELETE", f"/v2/images/{created['id']}", ok_missing=True)
        raise
    emit_record(record(client.find(created["id"])), fmt)


@image.command("list")
@click.option("--public", "visibility", flag_value="public", help="Only public images.")
@click.option("--private", "visibility", flag_value="private", help="Only your private ones.")
@click.option("--name")
@format_option
@pass_client
def list_images(client, visibility, name, fmt):
    """List the images you may use: your project's and the public ones."""
    params = {k: v for k, v in dict(visibility=visibility, name=name).items() if v}
    emit_rows(client.call("GET", "/v2/images", params=params)["images"], LIST_COLUMNS, fmt)


@image.command("show")
@click.argument("image_ref", metavar="IMAGE")
@format_option
@pass_client
def show(client, image_ref, fmt):
    """Show one image (by id or name)."""
    emit_record(record(client.find(image_ref)), fmt)


@image.command("delete")
@click.argument("image_refs", metavar="IMAGE...", nargs=-1, required=True)
@pass_client
def delete(client, image_refs):
    """Delete images and their data."""
    for ref in image_refs:
        found = client.find(ref)
        client.call("DELETE", f"/v2/images/{found['id']}")
        click.echo(f"deleted image {found['id']}")


@image.command("download")
@click.argument("image_ref", metavar="IMAGE")
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write it (default: standard output).")
@pass_client
def download(client, image_ref, path):
    """Download an image's data, checking its MD5 and xxh3-128 checksums."""
    found = client.find(image_ref)
    resp = client.stream("GET", f"/v2/images/{found['id']}/file", stream=True)
    if path is None:
        receive(resp, found, sys.stdout.buffer, show_progress=False)
        return
    tmp = path.with_name(f".{path.name}.part")
    try:
        with open(tmp, "wb") as out:
            receive(resp, found, out, show_progress=True)
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    click.echo(f"saved image {found['id']} to {path} ({found['size']} bytes, checksums "
               "verified)", err=True)


def receive(resp: requests.Response, found: dict, out, *, show_progress: bool) -> None:
    """Copies the image data to ``out``; raises if its checksums are not the image's."""
    md5, xxh = hashlib.md5(usedforsecurity=False), xxhash.xxh3_128()
    with resp, progress_bar() as progress:
        task = progress.add_task(f"downloading {found['name'] or found['id']}",
                                 total=found["size"], visible=show_progress)
        for chunk in resp.iter_content(CHUNK):
            md5.update(chunk)
            xxh.update(chunk)
            out.write(chunk)
            progress.advance(task, len(chunk))
    if (md5.hexdigest(), xxh.hexdigest()) != (found["checksum"], found["os_hash_value"]):
        raise click.ClickException(f"the data arrived corrupted (MD5 {md5.hexdigest()}, "
                                   f"expected {found['checksum']}); try again")
