"""The Swift API proxy service (``soko serve proxy``): its config and declaration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from soko.common.config import ConfigError, ServerSection
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
    # The Swift API middlewares in front of the core controllers, in the order a request
    # meets them (object/middleware/pipeline.py lists the known ones), in the order of
    # Swift's sample proxy pipeline.
    pipeline: list[str] = dataclasses.field(default_factory=lambda: [
        "bulk", "tempurl", "ratelimit", "crossdomain", "formpost", "staticweb",
        "container_quotas", "account_quotas", "slo", "dlo", "versioned_writes", "symlink"])
    # TempURL and FormPost signatures (object/middleware/signatures.py): the digests they
    # may use (Swift's allowed_digests; sha1 only if listed), the methods a temp URL may sign,
    # and the headers removed from its requests and answers unless allowed (Swift's
    # defaults; a name ending in '*' is a prefix).
    allowed_digests: list[str] = dataclasses.field(default_factory=lambda: ["sha256", "sha512"])
    tempurl_methods: list[str] = dataclasses.field(
        default_factory=lambda: ["GET", "HEAD", "PUT", "POST", "DELETE"])
    tempurl_incoming_remove_headers: list[str] = dataclasses.field(
        default_factory=lambda: ["x-timestamp", "x-open-expired"])
    tempurl_incoming_allow_headers: list[str] = dataclasses.field(default_factory=list)
    tempurl_outgoing_remove_headers: list[str] = dataclasses.field(
        default_factory=lambda: ["x-object-meta-*"])
    tempurl_outgoing_allow_headers: list[str] = dataclasses.field(
        default_factory=lambda: ["x-object-meta-public-*"])
    # Who may do what (object/proxy/access.py, Swift's keystoneauth): a project's accounts
    # are <prefix><project id> for each prefix; operator roles own their project's accounts,
    # on a prefix listed in service_roles only with an X-Service-Token holding one of those
    # roles too; reseller admin roles own every account.
    reseller_prefixes: list[str] = dataclasses.field(
        default_factory=lambda: ["AUTH_", "SERVICE_"])
    operator_roles: list[str] = dataclasses.field(default_factory=lambda: ["admin", "member"])
    service_roles: dict[str, list[str]] = dataclasses.field(
        default_factory=lambda: {"SERVICE_": ["service"]})
    reseller_admin_roles: list[str] = dataclasses.field(
        default_factory=lambda: ["ResellerAdmin", "admin"])
    # Roles that read (never write) everything in their project's accounts, e.g. ["reader"].
    project_reader_roles: list[str] = dataclasses.field(default_factory=list)
    # CORS (object/proxy/cors.py), as Swift's proxy: origins allowed on every container
    # besides its X-Container-Meta-Access-Control-Allow-Origin, headers every CORS answer
    # exposes, and whether an origin not allowed gets no CORS headers on actual requests.
    cors_allow_origin: list[str] = dataclasses.field(default_factory=list)
    cors_expose_headers: list[str] = dataclasses.field(default_factory=list)
    strict_cors_mode: bool = True
    # What /crossdomain.xml allows (object/middleware/crossdomain.py): Swift's default, any
    # domain (Flash/Silverlight clients; narrow it to your sites' domains if you serve it).
    cross_domain_policy: str = '<allow-access-from domain="*" secure="false" />'
    # Rate limits (object/middleware/ratelimit.py), Swift's settings: container PUT/DELETE
    # per second per account (0: none); object writes per second per container, and
    # listings per second per container, as [object count, rate] points (a container
    # between two points gets the rate on the line between them; below the first: none).
    # A request that would have to wait more than max_sleep_time_seconds is refused (498).
    # Each proxy worker counts on its own (Swift counts in memcache, across proxies).
    account_ratelimit: float = 0.0
    container_ratelimits: list[list[float]] = dataclasses.field(default_factory=list)
    container_listing_ratelimits: list[list[float]] = dataclasses.field(default_factory=list)
    max_sleep_time_seconds: float = 60.0

    def validate(self) -> None:
        super().validate()
        if "AUTH_" not in self.reseller_prefixes or not all(self.reseller_prefixes):
            raise ConfigError("reseller_prefixes: must hold 'AUTH_' (the accounts tempauth "
                              f"and the catalog name) and no empty prefix, got "
                              f"{self.reseller_prefixes}")
        for key in ("container_ratelimits", "container_listing_ratelimits"):
            points = getattr(self, key)
            if not all(len(point) == 2 and point[0] >= 0 and point[1] > 0 for point in points):
                raise ConfigError(f"{key}: expected [object count, requests per second] "
                                  f"pairs with a positive rate, got {points}")
        from soko.object.middleware.signatures import SUPPORTED_DIGESTS
        from soko.object.middleware.tempurl import SIGNABLE_METHODS

        for key, known in (("allowed_digests", SUPPORTED_DIGESTS),
                           ("tempurl_methods", SIGNABLE_METHODS)):
            values = getattr(self, key)
            if not values or not set(values) <= set(known):
                raise ConfigError(f"{key}: must be some of {', '.join(known)}, got {values}")
        for prefix, roles in self.service_roles.items():
            if prefix not in self.reseller_prefixes or not isinstance(roles, list) or not all(
                    isinstance(role, str) for role in roles):
                raise ConfigError(f"service_roles: {prefix!r} must be one of "
                                  "reseller_prefixes and name a list of roles")
        if self.s3_min_part_size < 1:
            raise ConfigError(f"s3_min_part_size: must be at least 1 byte, got "
                              f"{self.s3_min_part_size}")
        from soko.object.s3.manifests import MIN_PARTS_PER_MANIFEST
        from soko.object.s3.uploads import MAX_PART_NUMBER

        if self.slo_max_manifest_segments < MIN_PARTS_PER_MANIFEST:
            raise ConfigError(f"slo_max_manifest_segments: must be at least "
                              f"{MIN_PARTS_PER_MANIFEST} (an S3 multipart upload of "
                              f"{MAX_PART_NUMBER} parts is a manifest of manifests, two "
                              f"levels of at most this many), got "
                              f"{self.slo_max_manifest_segments}")

    # S3 API: virtual-hosted buckets are <bucket>.<s3_domain> (empty: path-style only), and
    # the region S3 clients are told (GetBucketLocation) and may sign for.
    s3_domain: str = ""
    s3_region: str = "us-east-1"
    # The smallest part of a multipart upload but its last (AWS: 5 MiB; lower it in tests).
    s3_min_part_size: int = 5 * 1024 * 1024
    # Segments one SLO manifest may name (Swift's slo max_manifest_segments); a multipart
    # upload of more parts is a manifest of sub-manifests.
    slo_max_manifest_segments: int = 1000

    def rings_dir(self, data_dir: Path) -> Path:
        return self.ring_dir or data_dir / "object" / "rings"


SERVICE = ServiceSpec(
    name="proxy",
    summary="Swift API proxy (/v1, tempauth /auth/v1.0) and S3 API over the object rings",
    section=ProxySection,
    app_factory="soko.object.proxy.app:make_app",
)
