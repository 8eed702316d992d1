"""The image service's logic, no HTTP: who sees which image, and the upload and download
of image data as segments in the object store.

Status changes are compare-and-swaps (``UPDATE ... WHERE status = ...``), so two uploads
to one image cannot both run. An upload probes the first MiB with ``qemu-img`` before it
stores anything, hashes everything it streams (MD5 and xxh3-128 of the whole image, MD5
per segment, checked against the ETag the object store returns), and on any failure
deletes what it stored and leaves the image ``killed``.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterator

import xxhash
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from soko.block.owner import current_owner, owner_alive
from soko.common.auth import AuthContext
from soko.common.db import session_scope
from soko.common.errors import BadRequest, Conflict, Forbidden, NotFound
from soko.common.validation import check_text
from soko.image.formats import DISK_FORMATS, PROBE_BYTES, FormatError, probe_head
from soko.image.models import NAME_MAX, Image, utcnow
from soko.image.store import CHUNK, StoreError, SwiftStore

log = logging.getLogger("soko.image")

VISIBILITIES = ("private", "public")
HASH_ALGO = "xxh3_128"


class HeadedStream:
    """A request body with its first bytes (already read for the probe) put back in front."""

    def __init__(self, head: bytes, stream):
        self.head = head
        self.stream = stream

    def read(self, size: int) -> bytes:
        if self.head:
            taken, self.head = self.head[:size], self.head[size:]
            return taken
        return self.stream.read(size)


def read_head(stream, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


class ImageManager:
    def __init__(self, *, sessions: sessionmaker[Session], store: SwiftStore,
                 segment_size: int, container: str, public_container: str):
        self.sessions = sessions
        self.store = store
        self.segment_size = segment_size
        self.containers = {"private": container, "public": public_container}

    # -- reading --------------------------------------------------------------------

    def get(self, auth: AuthContext, image_id: str) -> Image:
        """An image the caller may see: their project's, a public one, or (admin) any."""
        with session_scope(self.sessions) as s:
            image = s.get(Image, image_id)
        if image is None or image.status == "deleted" or not (
                image.owner == auth.project_id or image.visibility == "public"
                or auth.is_admin):
            raise NotFound(f"No image found with ID {image_id}")
        return image

    def owned(self, auth: AuthContext, image_id: str) -> Image:
        image = self.get(auth, image_id)
        if image.owner != auth.project_id and not auth.is_admin:
            raise Forbidden(f"image {image_id} belongs to another project; only its owner "
                            "may change it")
        return image

    def list(self, auth: AuthContext, *, visibility: str | None = None,
             name: str | None = None) -> list[Image]:
        query = (select(Image).where(Image.status != "deleted")
                 .where(or_(Image.owner == auth.project_id, Image.visibility == "public"))
                 .order_by(Image.created_at.desc(), Image.id.desc()))
        if visibility is not None:
            query = query.where(Image.visibility == check_choice(
                visibility, VISIBILITIES, "visibility"))
        if name is not None:
            query = query.where(Image.name == name)
        with session_scope(self.sessions) as s:
            return list(s.scalars(query))

    # -- changing -------------------------------------------------------------------

    def create(self, auth: AuthContext, *, name: str | None, disk_format: str,
               container_format: str = "bare", visibility: str = "private") -> Image:
        check_text(name, "name", NAME_MAX)
        check_choice(disk_format, DISK_FORMATS, "disk_format")
        check_choice(container_format, ("bare",), "container_format")
        check_choice(visibility, VISIBILITIES, "visibility")
        if visibility == "public" and not auth.is_admin:
            # Glance's default publicize_image policy: a public image is offered to every
            # project, so only an admin may publish one.
            raise Forbidden("only admins may create public images; leave out --public")
        image = Image(id=str(uuid.uuid4()), owner=auth.project_id, user_id=auth.user_id,
                      name=name, status="queued", visibility=visibility,
                      disk_format=disk_format, container_format=container_format,
                      segments=[])
        with session_scope(self.sessions) as s:
            s.add(image)
        return image

    def upload(self, auth: AuthContext, token: str, image_id: str, stream,
               content_length: int | None) -> Image:
        image = self.owned(auth, image_id)
        self.swap(image_id, ("queued",), "saving", uploader=current_owner())
        try:
            head = read_head(stream, PROBE_BYTES)
            if not head:
                raise BadRequest("the image data is empty")
            probe = probe_head(head, image.disk_format)
        except BaseException as exc:  # nothing was stored: the record is as it was
            self.swap(image_id, ("saving",), "queued", uploader=None,
                      updated_at=image.updated_at)
            if isinstance(exc, (BadRequest, FormatError)):
                raise BadRequest(str(exc)) from None
            raise
        container = self.containers[image.visibility]
        try:
            self.store.ensure_container(token, image.owner, container,
                                        image.visibility == "public")
            values = self.store_segments(token, image, container, HeadedStream(head, stream))
            if content_length is not None and values["size"] != content_length:
                raise BadRequest(f"the client sent {values['size']} of {content_length} bytes")
        except BaseException as exc:
            self.kill(token, image, container, exc)
            raise
        virtual_size = values["size"] if image.disk_format == "raw" else probe.virtual_size
        return self.swap(image_id, ("saving",), "active", uploader=None, container=container,
                         virtual_size=virtual_size, **values)

    def store_segments(self, token: str, image: Image, container: str, stream) -> dict:
        md5, xxh = hashlib.md5(usedforsecurity=False), xxhash.xxh3_128()
        segments, size = [], 0
        while True:
            first = stream.read(min(CHUNK, self.segment_size))
            if not first:
                break
            name = f"{image.id}/{len(segments):05d}"
            segment_md5 = hashlib.md5(usedforsecurity=False)
            counted = [0]

            def body(first=first, segment_md5=segment_md5, counted=counted):
                chunk = first
                while chunk:
                    segment_md5.update(chunk)
                    md5.update(chunk)
                    xxh.update(chunk)
                    counted[0] += len(chunk)
                    yield chunk
                    left = self.segment_size - counted[0]
                    chunk = stream.read(min(CHUNK, left)) if left > 0 else b""

            etag = self.store.put(token, image.owner, container, name, body())
            if etag != segment_md5.hexdigest():
                raise StoreError(f"the object store stored segment {name} with ETag {etag}, "
                                 f"but the data sent has MD5 {segment_md5.hexdigest()}")
            segments.append([name, counted[0], etag])
            size += counted[0]
        return {"size": size, "segments": segments, "checksum": md5.hexdigest(),
                "os_hash_algo": HASH_ALGO, "os_hash_value": xxh.hexdigest()}

    def kill(self, token: str, image: Image, container: str, cause: BaseException) -> None:
        """A failed upload: remove every segment it stored, then mark the image killed."""
        log.warning("upload of image %s failed (%s); removing its segments", image.id, cause)
        try:
            self.store.delete_prefix(token, image.owner, container, f"{image.id}/")
        except StoreError as exc:
            log.error("image %s: segments left in %s: %s", image.id, container, exc)
        self.swap(image.id, ("saving",), "killed", uploader=None)

    def download(self, auth: AuthContext, token: str, image_id: str) -> tuple[Image, Iterator]:
        image = self.get(auth, image_id)
        if image.status != "active":
            raise Conflict(f"image {image_id} is {image.status}; only an active image has data")

        def chunks():
            for name, _size, etag in image.segments:
                yield from self.store.get(token, image.owner, image.container, name, etag)

        return image, chunks()

    def delete(self, auth: AuthContext, token: str, image_id: str) -> None:
        image = self.owned(auth, image_id)
        self.swap(image_id, ("queued", "active", "killed"), "deleted")
        try:
            for container in {image.container, *self.containers.values()} - {None}:
                self.store.delete_prefix(token, image.owner, container, f"{image.id}/")
        except StoreError:
            self.swap(image_id, ("deleted",), image.status)  # try again later
            raise
        with session_scope(self.sessions) as s:
            s.execute(delete(Image).where(Image.id == image_id))

    def swap(self, image_id: str, from_states: tuple[str, ...], to_state: str,
             **values) -> Image:
        with session_scope(self.sessions) as s:
            result = s.execute(update(Image)
                               .where(Image.id == image_id, Image.status.in_(from_states))
                               .values(**{"status": to_state, "updated_at": utcnow(), **values}))
            image = s.get(Image, image_id, populate_existing=True)
            if image is None:
                raise NotFound(f"No image found with ID {image_id}")
            if result.rowcount != 1:
                raise Conflict(f"image {image_id} is {image.status}; this needs it "
                               f"{' or '.join(from_states)}")
            return image

    def reconcile(self) -> None:
        """Uploads whose process died will never finish: their images become killed."""
        with session_scope(self.sessions) as s:
            stuck = [(i.id, i.uploader) for i in
                     s.scalars(select(Image).where(Image.status == "saving"))]
        for image_id, uploader in stuck:
            if uploader is None or not owner_alive(uploader):
                log.warning("image %s: its upload died; marking it killed", image_id)
                with session_scope(self.sessions) as s:
                    s.execute(update(Image).where(Image.id == image_id,
                                                  Image.uploader == uploader)
                              .values(status="killed", uploader=None))


def check_choice(value, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise BadRequest(f"{what} must be one of {', '.join(choices)}, got {value!r}")
    return value
