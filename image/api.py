"""The Glance-v2-shaped image API: thin falcon resources over ``ImageManager``.

``POST /v2/images`` makes a record (``queued``), ``PUT /v2/images/{id}/file`` streams the
data into the object store, ``GET .../file`` streams it back (``Content-MD5`` is the
checksum, as Glance sends it). Routes are not project-scoped (Glance's are not): the
manager decides who sees an image by its owner and visibility.
"""

from __future__ import annotations

import falcon

from soko.common.app import make_base_app
from soko.common.auth import AuthMiddleware, TokenValidator
from soko.common.config import Config
from soko.common.errors import BadRequest
from soko.image.manager import ImageManager
from soko.image.models import Image

FIELDS = ("id", "name", "status", "visibility", "disk_format", "container_format", "size",
          "virtual_size", "checksum", "os_hash_algo", "os_hash_value", "owner")


def iso(value) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value is not None else None


def image_view(image: Image) -> dict:
    return {
        **{field: getattr(image, field) for field in FIELDS},
        "protected": False,
        "min_disk": 0,
        "min_ram": 0,
        "tags": [],
        "segments": len(image.segments or []),
        "created_at": iso(image.created_at),
        "updated_at": iso(image.updated_at or image.created_at),
        "self": f"/v2/images/{image.id}",
        "file": f"/v2/images/{image.id}/file",
        "schema": "/v2/schemas/image",
    }


def token_of(req: falcon.Request) -> str:
    return req.get_header("X-Auth-Token")


class Images:
    """``/v2/images``: list what the caller may see; create a record."""

    def __init__(self, manager: ImageManager):
        self.manager = manager

    def on_get(self, req, resp) -> None:
        images = self.manager.list(req.context.auth, visibility=req.get_param("visibility"),
                                   name=req.get_param("name"))
        resp.media = {"images": [image_view(i) for i in images], "schema": "/v2/schemas/images",
                      "first": "/v2/images"}

    def on_post(self, req, resp) -> None:
        body = req.get_media()
        if not isinstance(body, dict):
            raise BadRequest('the body must be a JSON object {"name": ..., "disk_format": ...}')
        image = self.manager.create(
            req.context.auth, name=body.get("name"), disk_format=body.get("disk_format"),
            container_format=body.get("container_format", "bare"),
            visibility=body.get("visibility", "private"))
        resp.status = falcon.HTTP_201
        resp.location = f"/v2/images/{image.id}"
        resp.media = image_view(image)


class ImageItem:
    def __init__(self, manager: ImageManager):
        self.manager = manager

    def on_get(self, req, resp, image_id: str) -> None:
        resp.media = image_view(self.manager.get(req.context.auth, image_id))

    def on_delete(self, req, resp, image_id: str) -> None:
        self.manager.delete(req.context.auth, token_of(req), image_id)
        resp.status = falcon.HTTP_204


class ImageFile:
    """``/v2/images/{id}/file``: the image data, streamed both ways."""

    def __init__(self, manager: ImageManager):
        self.manager = manager

    def on_put(self, req, resp, image_id: str) -> None:
        self.manager.upload(req.context.auth, token_of(req), image_id, req.bounded_stream,
                            req.content_length)
        resp.status = falcon.HTTP_204

    def on_get(self, req, resp, image_id: str) -> None:
        image, chunks = self.manager.download(req.context.auth, token_of(req), image_id)
        resp.content_type = "application/octet-stream"
        resp.content_length = image.size
        resp.set_header("Content-MD5", image.checksum)
        resp.stream = chunks


class Versions:
    """``GET /`` and ``/versions``: Glance's version document, for clients that discover the
    API version from the catalog endpoint (keystoneauth, openstacksdk)."""

    public = True

    def on_get(self, req, resp) -> None:
        href = f"{req.prefix}/v2/"
        resp.media = {"versions": [{"id": "v2.9", "status": "CURRENT",
                                    "links": [{"rel": "self", "href": href}]}]}
        if req.path == "/":
            resp.status = falcon.HTTP_300


def make_app(config: Config, *, validator: TokenValidator | None = None,
             manager: ImageManager | None = None) -> falcon.App:
    """The image API. Tests may inject ``validator`` and ``manager``; production builds
    both from config and marks uploads that died with a previous process as killed."""
    if validator is None:
        from soko.identity.tokens import FernetTokenValidator

        validator = FernetTokenValidator.from_config(config)
    if manager is None:
        manager = make_manager(config)
        manager.reconcile()
    app = make_base_app(middleware=[AuthMiddleware(validator)])
    app.add_route("/", Versions())
    app.add_route("/versions", Versions())
    app.add_route("/v2/images", Images(manager))
    app.add_route("/v2/images/{image_id}", ImageItem(manager))
    app.add_route("/v2/images/{image_id}/file", ImageFile(manager))
    return app


def make_manager(config: Config) -> ImageManager:
    from soko.common.db import create_tables, database_url, make_engine, make_sessionmaker
    from soko.image.models import Base
    from soko.image.service import ImageConfig, object_store_url
    from soko.image.store import SwiftStore

    section: ImageConfig = config.section("image")
    state_dir = config.data_dir / "image"
    engine = make_engine(database_url(section.database_url, state_dir, "image"))
    create_tables(Base.metadata, engine, state_dir)
    return ImageManager(sessions=make_sessionmaker(engine),
                        store=SwiftStore(object_store_url(config)),
                        segment_size=section.segment_size, container=section.container,
                        public_container=section.public_container)
