"""What ``soko-image`` is to the rest of soko: its config section and how it starts.

A Glance-v2-shaped subset: image records in its own SQLite DB, image data in the object
store (the owning project's account, through the Swift API with the caller's token).
Imports only the config dataclass, so ``soko --help`` and ``soko up`` stay cheap.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from soko.common.config import Config, ConfigError, ServerSection
from soko.common.service import ServiceSpec

MiB = 1 << 20


@dataclasses.dataclass
class ImageConfig(ServerSection):
    port: int = 9292  # Glance's
    database_url: str | None = None  # default: sqlite in <data_dir>/image/
    # The Swift API the data goes through; empty: the [proxy] section's endpoint.
    object_store_url: str = ""
    # Images are stored as segments of this many bytes plus a manifest in the image record
    # (the proxy has no SLO yet); Swift caps one object at 5 GiB.
    segment_size: int = 100 * MiB
    container: str = "images"  # private images, in the owner's account
    public_container: str = "images-public"  # public ones: read ACL `*:*`

    catalog_type: ClassVar[str] = "image"
    catalog_name: ClassVar[str] = "glance"
    catalog_path: ClassVar[str] = ""

    def validate(self) -> None:
        super().validate()
        if not 64 * 1024 <= self.segment_size <= 5 * 1024 * MiB:
            raise ConfigError(f"segment_size: must be 64 KiB..5 GiB, got {self.segment_size}")
        if not self.container or self.container == self.public_container:
            raise ConfigError("container and public_container: must be two different names")


def object_store_url(config: Config) -> str:
    """The Swift API's base URL (``http://host:8080``) the image service talks to."""
    section: ImageConfig = config.section("image")
    if section.object_store_url:
        return section.object_store_url.rstrip("/")
    from soko.identity.service import advertised_endpoint

    return advertised_endpoint(config.section("proxy"))


SERVICE = ServiceSpec(
    name="image",
    summary="Glance-v2-shaped image API: image data segmented into the object store",
    section=ImageConfig,
    app_factory="soko.image.api:make_app",
)
