"""The Swift API proxy service (``soko serve proxy``): its config and declaration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from soko.common.config import ServerSection
from soko.common.service import ServiceSpec


@dataclasses.dataclass
class ProxySection(ServerSection):
    port: int = 8080
    workers: int = 2
    threads: int = 16
    ring_dir: Path | None = None  # default: <data_dir>/object/rings
    # The ring hash salt; empty: the secret file next to the rings (object/shared/hash_secret.py).
    hash_path_prefix: str = ""
    hash_path_suffix: str = ""
    conn_timeout: float = 0.5  # connecting to a storage node
    node_timeout: float = 10.0  # waiting for a storage node's answer
    # A node with this many connect failures/timeouts, each within error_interval seconds
    # of the last, is skipped (handoffs take its writes) until error_interval passes quietly
    # (0: never skipped).
    error_limit: int = 3
    error_interval: float = 30.0
    # How long a proxy worker trusts what it learned about a container it serves to the
    # container's owner (existence, placement). ACL checks for others always ask afresh.
    container_info_ttl: float = 5.0
    public_url: str = ""  # what X-Storage-Url starts with; empty: the request's own host
    # S3 API: virtual-hosted buckets are <bucket>.<s3_domain> (empty: path-style only), and
    # the region S3 clients are told (GetBucketLocation) and may sign for.
    s3_domain: str = ""
    s3_region: str = "us-east-1"

    def rings_dir(self, data_dir: Path) -> Path:
        return self.ring_dir or data_dir / "object" / "rings"


SERVICE = ServiceSpec(
    name="proxy",
    summary="Swift API proxy (/v1, tempauth /auth/v1.0) and S3 API over the object rings",
    section=ProxySection,
    app_factory="soko.object.proxy.app:make_app",
)
