"""Volumes and images: a new volume filled from an image (``imageRef``), and a volume
uploaded as a new image (Cinder's ``os-volume_upload_image``).

The block service talks to ``soko-image`` over its API with the caller's own token, so a
user can fill a volume from exactly the images they may see (their project's and public
ones) and nothing else. Both directions run in a background thread after the request has
been checked and answered 202, with the volume in Cinder's transitional status
(``downloading``, ``uploading``) owned by this process: if the process dies, reconcile
deletes a half-filled volume and returns an uploading one to ``available``.

A download is hashed as it lands (MD5 and xxh3-128 against the image's record). Raw data
goes straight into the volume; qcow2 lands in an unnamed ``O_TMPFILE`` in the service's
state dir (a crash leaves no temp file), then ``qemu-img convert -f qcow2`` writes it into
the volume: the format is always given, never probed, so a raw image that happens to
look like qcow2 cannot make QEMU open files on the host.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import subprocess
import threading

import falcon
import requests
import xxhash

from soko.block import limits
from soko.block.api import VolumeAction, Volumes, body_of, check_bool, volume_detail
from soko.block.manager import GiB, VolumeManager
from soko.common.config import Config
from soko.common.errors import BadRequest, Conflict, NotFound, ServiceUnavailable, SokoError
from soko.common.validation import check_id, is_id, one_action

log = logging.getLogger("soko.block.images")

CHUNK = 1 << 20
DISK_FORMATS = ("raw", "qcow2")


def image_endpoint(config: Config) -> str | None:
    """Where ``soko-image`` listens (its ``[image]`` section), or None if not configured."""
    section = config.sections.get("image")
    if section is None:
        return None
    from soko.identity.service import advertised_endpoint

    return advertised_endpoint(section)


class ImageAPI:
    """The image service's API, spoken with the caller's token."""

    def __init__(self, endpoint: str | None):
        self.endpoint = endpoint
        self.http = requests.Session()

    def call(self, method: str, path: str, token: str, *, ok=(200, 201, 204), stream=False,
             **kwargs) -> requests.Response:
        if self.endpoint is None:
            raise BadRequest("this block service has no image service configured "
                             "([image] in soko.toml)")
        try:
            headers = {"X-Auth-Token": token, **kwargs.pop("headers", {})}
            resp = self.http.request(method, self.endpoint + path, stream=stream,
                                     timeout=(10, 600), headers=headers, **kwargs)
        except requests.RequestException as exc:
            raise ServiceUnavailable(f"the image service did not answer: "
                                     f"{exc.__class__.__name__}") from None
        if resp.status_code not in ok:
            try:
                message = resp.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = resp.reason
            error = NotFound if resp.status_code == 404 else ServiceUnavailable
            raise error(f"image service: {resp.status_code} {message}")
        return resp

    def get(self, token: str, image_id: str) -> dict:
        return self.call("GET", f"/v2/images/{check_id(image_id, 'image id')}", token).json()

    def find(self, token: str, ref: str) -> dict:
        """An image by id, or by name when exactly one visible image has it (as Cinder
        resolves ``imageRef``); a name only ever travels as a query parameter."""
        if is_id(ref):
            with contextlib.suppress(NotFound):
                return self.get(token, ref)
        named = self.call("GET", "/v2/images", token, params={"name": ref}).json()["images"]
        if len(named) == 1:
            return named[0]
        if named:
            raise BadRequest(f"{len(named)} images are named {ref!r}; give the image's id")
        raise NotFound(f"no image {ref!r}")

    def create(self, token: str, name: str, disk_format: str) -> dict:
        return self.call("POST", "/v2/images", token, json={
            "name": name, "disk_format": disk_format, "container_format": "bare"}).json()

    def upload(self, token: str, image_id: str, f) -> None:
        self.call("PUT", f"/v2/images/{image_id}/file", token, data=f,
                  headers={"Content-Type": "application/octet-stream"})

    def delete(self, token: str, image_id: str) -> None:
        self.call("DELETE", f"/v2/images/{image_id}", token, ok=(204, 404))


def qemu_img(*argv: str, pass_fds=()) -> None:
    proc = subprocess.run(["qemu-img", *argv], capture_output=True, text=True,
                          pass_fds=pass_fds, env={**os.environ, "LC_ALL": "C"})
    if proc.returncode != 0:
        raise RuntimeError(f"qemu-img {argv[0]} failed: {proc.stderr.strip()}")


@contextlib.contextmanager
def unnamed_file(directory: str | os.PathLike):
    """An ``O_TMPFILE`` in ``directory`` and a path qemu-img can open it by."""
    fd = os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o600)
    try:
        yield fd, f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def image_metadata(image: dict) -> dict:
    """Cinder's ``volume_image_metadata``: what the volume was made from."""
    keys = ("checksum", "disk_format", "container_format", "size", "min_disk", "min_ram")
    return {"image_id": image["id"], "image_name": image.get("name") or "",
            **{k: image.get(k) for k in keys}}


class VolumeImages:
    def __init__(self, manager: VolumeManager, images: ImageAPI):
        self.manager = manager
        self.images = images

    # -- image -> volume ------------------------------------------------------------

    def create_volume(self, *, token: str, image_id: str, size: int, **fields):
        """Checks the image (visible, active, fits), creates the volume ``downloading``
        and fills it in the background. Bad input is refused before anything exists."""
        try:
            image = self.images.find(token, image_id)
        except NotFound:
            raise BadRequest(f"image {image_id} does not exist or is not visible to this "
                             "project (see `soko image list`)") from None
        if image["status"] != "active":
            raise BadRequest(f"image {image_id} is {image['status']}; only an active image "
                             "can fill a volume")
        if image["disk_format"] not in DISK_FORMATS:
            raise BadRequest(f"image {image_id} is {image['disk_format']}; volumes are filled "
                             f"from {' or '.join(DISK_FORMATS)} images")
        needed = math.ceil(image["virtual_size"] / GiB)
        if size < needed:
            raise BadRequest(f"size {size} GiB is smaller than the image's virtual size "
                             f"({image['virtual_size']} bytes): give at least {needed} GiB")
        volume = self.manager.create(size=size, ready_status="downloading", **fields)
        self.background(f"fill-{volume.id}", self.fill, volume.project_id, volume.id,
                        image, token)
        return volume

    def fill(self, project_id: str, volume_id: str, image: dict, token: str) -> None:
        """A raw image streams straight into the new (all-zero) volume, skipping zero
        chunks so the volume stays thin; a qcow2 one lands in a temp file first, since
        qemu-img cannot read qcow2 from a stream."""
        target = self.manager.pool.path(volume_id)
        try:
            if image["disk_format"] == "raw":
                fd = os.open(target, os.O_WRONLY)
                try:
                    self.download(token, image, fd, skip_zeros=True)
                finally:
                    os.close(fd)
            else:
                with unnamed_file(self.manager.state_dir) as (fd, path):
                    self.download(token, image, fd, skip_zeros=False)
                    qemu_img("convert", "-f", image["disk_format"], "-O", "raw", "-n",
                             "--target-is-zero", path, target, pass_fds=(fd,))
        except Exception as exc:
            log.error("volume %s: filling it from image %s failed: %s", volume_id,
                      image["id"], exc)
            self.manager.transition(project_id, volume_id, ("downloading",), "error")
            return
        self.manager.transition(project_id, volume_id, ("downloading",), "available",
                                bootable=True, image_meta=image_metadata(image))

    def download(self, token: str, image: dict, fd: int, *, skip_zeros: bool) -> None:
        """Writes the image data into ``fd`` from offset 0 and checks its checksums."""
        md5, xxh = hashlib.md5(usedforsecurity=False), xxhash.xxh3_128()
        offset = 0
        with self.images.call("GET", f"/v2/images/{image['id']}/file", token,
                              stream=True) as resp:
            for chunk in resp.iter_content(CHUNK):
                md5.update(chunk)
                xxh.update(chunk)
                if not (skip_zeros and chunk.count(0) == len(chunk)):
                    os.pwrite(fd, chunk, offset)
                offset += len(chunk)
        if offset != image["size"]:
            raise RuntimeError(f"image {image['id']} arrived with {offset} of "
                               f"{image['size']} bytes")
        os.fsync(fd)
        if (md5.hexdigest(), xxh.hexdigest()) != (image["checksum"], image["os_hash_value"]):
            raise RuntimeError(f"image {image['id']} arrived with MD5 {md5.hexdigest()}, "
                               f"not {image['checksum']}")

    # -- volume -> image ------------------------------------------------------------

    def upload(self, *, token: str, project_id: str, user_id: str, volume_id: str,
               name: str, disk_format: str, force: bool = False) -> tuple:
        """Makes the image record and streams the volume into it in the background.

        An available volume is ``uploading`` meanwhile, so nothing attaches and writes it.
        An in-use one (only with ``force``, as Cinder) keeps its status and its guest: the
        upload reads a snapshot taken for it (crash-consistent, visible in the snapshot
        list while it lasts) and deletes the snapshot when done."""
        if disk_format not in DISK_FORMATS:
            raise BadRequest(f"disk_format must be {' or '.join(DISK_FORMATS)}")
        volume = self.manager.get(project_id, volume_id)
        snapshot = None
        if volume.status == "in-use" and force:
            snapshot = self.manager.snapshots.create(
                project_id=project_id, user_id=user_id, volume_id=volume_id, force=True,
                name=f"for image {name}")
        elif volume.status == "in-use":
            raise Conflict(f"volume {volume_id} is in-use: detach it, or give --force to "
                           "upload a crash-consistent snapshot of it")
        else:
            self.manager.transition(project_id, volume_id, ("available",), "uploading",
                                    "upload-to-image")
        try:
            image = self.images.create(token, name, disk_format)
        except SokoError:
            self.finish_upload(project_id, volume_id, snapshot)
            raise
        source = (self.manager.pool.path(volume_id) if snapshot is None
                  else self.manager.pool.snapshot_path(snapshot.id))
        self.background(f"upload-{volume_id}", self.send, project_id, volume_id, image,
                        token, source, snapshot)
        return self.manager.get(project_id, volume_id), image

    def send(self, project_id: str, volume_id: str, image: dict, token: str, source: str,
             snapshot) -> None:
        try:
            if image["disk_format"] == "raw":
                with open(source, "rb") as f:
                    self.images.upload(token, image["id"], f)
            else:
                with unnamed_file(self.manager.state_dir) as (fd, path):
                    qemu_img("convert", "-f", "raw", "-O", image["disk_format"], source, path,
                             pass_fds=(fd,))
                    with os.fdopen(os.dup(fd), "rb") as f:
                        self.images.upload(token, image["id"], f)
        except Exception as exc:
            log.error("volume %s: upload to image %s failed: %s", volume_id, image["id"], exc)
            with contextlib.suppress(SokoError):
                self.images.delete(token, image["id"])
        self.finish_upload(project_id, volume_id, snapshot)

    def finish_upload(self, project_id: str, volume_id: str, snapshot) -> None:
        if snapshot is None:
            self.manager.transition(project_id, volume_id, ("uploading",), "available")
        else:
            self.manager.snapshots.delete(project_id, snapshot.id)

    @staticmethod
    def background(name: str, target, *args) -> None:
        threading.Thread(target=target, args=args, name=name, daemon=True).start()


class ImageVolumes(Volumes):
    """``POST /volumes`` with Cinder's ``imageRef``: a volume filled from an image."""

    def __init__(self, manager: VolumeManager, volume_images: VolumeImages):
        super().__init__(manager, detail=False)
        self.volume_images = volume_images

    def on_post(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        spec = body_of(req, "volume")
        if spec.get("imageRef") is None:
            return super().on_post(req, resp, project_id)
        for other in ("source_volid", "snapshot_id"):
            if spec.get(other) is not None:
                raise BadRequest(f"give imageRef or {other}, not both")
        volume = self.volume_images.create_volume(
            token=req.get_header("X-Auth-Token"),
            image_id=limits.check_text(spec["imageRef"], "imageRef", limits.NAME_MAX),
            size=limits.check_size(spec.get("size")),
            project_id=project_id,
            user_id=req.context.auth.user_id,
            name=limits.check_text(spec.get("name"), "name", limits.NAME_MAX),
            description=limits.check_text(spec.get("description"), "description",
                                          limits.DESCRIPTION_MAX),
            metadata=limits.check_metadata(spec.get("metadata")),
        )
        resp.status = falcon.HTTP_202
        resp.media = {"volume": volume_detail(req, volume)}


class ImageVolumeAction(VolumeAction):
    """Adds ``os-volume_upload_image`` to the volume actions."""

    ACTIONS = (*VolumeAction.ACTIONS, "os-volume_upload_image")

    def __init__(self, manager: VolumeManager, volume_images: VolumeImages,
                 local_attach_role: str = "admin"):
        super().__init__(manager, local_attach_role)
        self.volume_images = volume_images

    def on_post(self, req, resp, project_id: str, volume_id: str) -> None:
        action, args = one_action(req, self.ACTIONS)
        if action != "os-volume_upload_image":
            return super().on_post(req, resp, project_id, volume_id)
        if not isinstance(args.get("image_name"), str) or not args["image_name"]:
            raise BadRequest('os-volume_upload_image needs {"image_name": "...", '
                             '"disk_format": "raw"|"qcow2"}')
        volume, image = self.volume_images.upload(
            token=req.get_header("X-Auth-Token"), project_id=project_id,
            user_id=req.context.auth.user_id, volume_id=volume_id,
            name=limits.check_text(args["image_name"], "image_name", limits.NAME_MAX),
            disk_format=args.get("disk_format", "raw"),
            force=check_bool(args.get("force", False), "force"))
        resp.status = falcon.HTTP_202
        resp.media = {"os-volume_upload_image": {
            "id": volume.id, "status": volume.status, "size": volume.size,
            "updated_at": volume.updated_at.isoformat() if volume.updated_at else None,
            "image_id": image["id"], "image_name": image["name"],
            "disk_format": image["disk_format"], "container_format": image["container_format"],
            "display_description": volume.description, "volume_type": None}}


def image_resources(manager: VolumeManager, config: Config,
                    local_attach_role: str) -> tuple[Volumes, VolumeAction]:
    """The volume collection and action resources, image-aware."""
    volume_images = VolumeImages(manager, ImageAPI(image_endpoint(config)))
    return (ImageVolumes(manager, volume_images),
            ImageVolumeAction(manager, volume_images, local_attach_role))
