"""The S3 API in front of the Swift proxy: ``S3Layer`` wraps the proxy's WSGI app.

A request that carries AWS auth (an ``AWS4-HMAC-SHA256`` Authorization header or a
presigned query), or that names a bucket in its host under ``[proxy] s3_domain``, is S3;
everything else goes to the proxy untouched. An S3 request is authenticated here (SigV4
against the credential ``identity.ec2.Ec2Resolver`` finds), turned into Swift requests on
the credential's project account (``swift.SwiftCaller``), and answered in S3's terms:
buckets are that account's containers, objects its objects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import quote

from soko.common.app import REFUSAL_ENVIRON_KEY, log_access, new_trans_id
from soko.common.auth import AuthContext
from soko.common.config import Config
from soko.common.errors import ServiceUnavailable
from soko.object.s3 import sigv4
from soko.object.s3.buckets import BUCKET_NAME
from soko.object.s3.dispatch import dispatch
from soko.object.s3.errors import S3Error
from soko.object.s3.owners import BucketOwners
from soko.object.s3.request import S3Request, S3Response
from soko.object.s3.swift import ACCOUNT_PREFIX, SwiftCaller

log = logging.getLogger("soko.s3")

HTTP_REASONS = {200: "OK", 204: "No Content", 206: "Partial Content", 304: "Not Modified",
                400: "Bad Request", 403: "Forbidden", 404: "Not Found",
                405: "Method Not Allowed", 409: "Conflict", 411: "Length Required",
                412: "Precondition Failed", 416: "Requested Range Not Satisfiable",
                500: "Internal Server Error", 501: "Not Implemented",
                503: "Service Unavailable"}


# What an unsigned read may ask besides the object or listing itself.
ANONYMOUS_PARAMS = frozenset({"prefix", "delimiter", "marker", "max-keys", "list-type",
                              "continuation-token", "start-after", "encoding-type",
                              "fetch-owner", "partNumber", *(f"response-{name}" for name in (
                                  "content-type", "content-language", "expires",
                                  "cache-control", "content-disposition",
                                  "content-encoding"))})


class CredentialResolver(Protocol):
    def resolve(self, access: str) -> tuple[str, AuthContext]:
        """(secret, who) of an access key; ``LookupError`` if no usable credential has it."""


class S3Layer:
    """WSGI: S3 requests here, all others to the Swift proxy app it wraps."""

    def __init__(self, proxy_app, config: Config, *, domain: str = "",
                 region: str = "us-east-1", credentials: CredentialResolver | None = None,
                 clock: Callable[[], float] = time.time,
                 swift_roots: frozenset[str] = frozenset(), min_part_size: int = 5 << 20,
                 parts_per_manifest: int = 1000):
        self.proxy_app = proxy_app
        self.config = config
        self._credentials = credentials
        self.owners = BucketOwners()
        self.domain = domain.lower().strip(".")
        self.region = region
        self.clock = clock
        self.swift_roots = swift_roots  # first path segments the Swift API serves
        self.min_part_size = min_part_size
        self.parts_per_manifest = parts_per_manifest  # the SLO layer's manifest limit

    def credentials(self) -> CredentialResolver:
        """Opened at the first S3 request: a proxy serving only Swift never needs it."""
        if self._credentials is None:
            from soko.identity.ec2 import Ec2Resolver

            self._credentials = Ec2Resolver.from_config(self.config)
        return self._credentials

    def __call__(self, environ: dict, start_response):
        host_bucket = self.host_bucket(environ)
        refused = environ.get(REFUSAL_ENVIRON_KEY) is not None  # the proxy answers those
        if refused or (host_bucket is None and not sigv4.is_signed(environ)
                       and self.anonymous_owner(environ) is None):
            return self.proxy_app(environ, start_response)
        started, trans_id = time.monotonic(), new_trans_id()
        resource = quote(environ.get("PATH_INFO", "/").encode("latin-1"), safe="/")
        try:
            req = self.authenticate(environ, host_bucket, trans_id)
            resource = req.resource
            resp = dispatch(req)
        except S3Error as exc:
            resp = self.error(exc, resource, trans_id, environ)
        except ServiceUnavailable as exc:
            resp = self.error(S3Error("ServiceUnavailable", exc.message), resource, trans_id,
                              environ)
        except Exception:
            log.exception("S3 request %s failed", trans_id)
            resp = self.error(S3Error("InternalError"), resource, trans_id, environ)
        headers = [*resp.headers, ("x-amz-request-id", trans_id), ("X-Trans-Id", trans_id)]
        body = resp.body
        if isinstance(body, bytes):
            if not any(k.lower() == "content-length" for k, _ in headers):
                headers.append(("Content-Length", str(len(body))))
            body = [body] if environ["REQUEST_METHOD"] != "HEAD" else []
        start_response(f"{resp.status} {HTTP_REASONS.get(resp.status, 'Unknown')}", headers)
        log_access(environ.get("REMOTE_ADDR"), trans_id, environ["REQUEST_METHOD"], resource,
                   resp.status, time.monotonic() - started, source="s3")
        return body

    def error(self, exc: S3Error, resource: str, trans_id: str, environ: dict) -> S3Response:
        headers = [("Content-Type", "application/xml")]
        has_body = environ.get("CONTENT_LENGTH") not in (None, "", "0") or "chunked" in (
            environ.get("HTTP_TRANSFER_ENCODING") or "").lower()
        if has_body:  # the body may not have been read: never drain gigabytes to reuse it
            headers.append(("Connection", "close"))
        return S3Response(exc.status, headers, exc.xml(resource, trans_id))

    def host_bucket(self, environ: dict) -> str | None:
        """The bucket named by a virtual-hosted request's host (``<bucket>.<s3_domain>``)."""
        if not self.domain:
            return None
        host = (environ.get("HTTP_HOST") or "").lower()
        host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        suffix = "." + self.domain
        if host.endswith(suffix) and len(host) > len(suffix):
            return host[: -len(suffix)]
        return None

    def anonymous_owner(self, environ: dict) -> str | None:
        """The project owning the bucket an unsigned path-style request names
        (``/<bucket>[/<key>]``), if S3 created that bucket: such a request is an anonymous S3
        one (a public-read bucket serves reads). Any other unsigned request, and every path
        of the Swift API's own, is the Swift API's."""
        first = environ.get("PATH_INFO", "/")[1:].partition("/")[0]
        if first in self.swift_roots or BUCKET_NAME.match(first) is None:
            return None
        registry = SwiftCaller(self.proxy_app, environ, None, "", account="")  # own trans id
        return self.owners.owner(registry, first)

    def authenticate(self, environ: dict, host_bucket: str | None, trans_id: str) -> S3Request:
        query = sigv4.parse_query(environ.get("QUERY_STRING", ""))
        try:
            path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8")
        except UnicodeError:
            raise S3Error("InvalidURI") from None
        if "\x00" in path:
            raise S3Error("InvalidURI")
        if host_bucket is not None:
            bucket, key = host_bucket, path[1:] or None
        else:
            bucket, _, key = path[1:].partition("/")
            bucket, key = bucket or None, key or None
        if not sigv4.is_signed(environ):
            return self.anonymous(environ, bucket, key, query, trans_id)
        signed = sigv4.parse_request(environ, query)
        try:  # before the credential is looked up: a stale request costs no database read
            sigv4.check_time(signed, self.clock())
        except ValueError:
            raise S3Error("AccessDenied", "The request time is malformed.") from None
        try:
            secret, who = self.credentials().resolve(signed.access)
        except LookupError:  # identity.ec2.UnknownAccessKey
            raise S3Error("InvalidAccessKeyId", AWSAccessKeyId=signed.access) from None
        signing_key = sigv4.verify(environ, query, signed, secret)
        return S3Request(environ, environ["REQUEST_METHOD"], bucket, key, query, signed, who,
                         SwiftCaller(self.proxy_app, environ, who, trans_id), trans_id,
                         self.region, self.owners, signing_key, self.min_part_size,
                         self.parts_per_manifest)

    def anonymous(self, environ: dict, bucket: str | None, key: str | None, query: list,
                  trans_id: str) -> S3Request:
        """An unsigned read, on the account of the project that owns the bucket (the
        container's ACL then decides: ``public-read`` lets it through)."""
        method = environ["REQUEST_METHOD"]
        if bucket is None or method not in ("GET", "HEAD") or any(
                name not in ANONYMOUS_PARAMS for name, _ in query):
            raise S3Error("AccessDenied")
        project = self.owners.owner(SwiftCaller(self.proxy_app, environ, None, trans_id,
                                                account=""), bucket)
        if project is None:  # gone since the request was routed here
            raise S3Error("AccessDenied")
        caller = SwiftCaller(self.proxy_app, environ, None, trans_id,
                             account=ACCOUNT_PREFIX + project)
        return S3Request(environ, method, bucket, key, query, None, None, caller, trans_id,
                         self.region, self.owners, b"", self.min_part_size,
                         self.parts_per_manifest)
