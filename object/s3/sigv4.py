"""AWS Signature Version 4, as S3 checks it: in the ``Authorization`` header or presigned.

The server rebuilds the canonical request from what it received (method, the path as sent,
the sorted query, the signed headers, the payload hash the client declared), signs it with
the secret it holds for the access key, and compares in constant time. A declared payload
hash is then checked against the body as it streams (``integrity.VerifiedBody``), so a body
that does not match fails the write before the object is committed.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import hmac
import re
import time
from urllib.parse import quote, unquote, urlsplit

from soko.object.s3.errors import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
SIGNED_CHUNKS = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
UNSIGNED_CHUNKS = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_PAYLOADS = (SIGNED_CHUNKS, UNSIGNED_CHUNKS, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")
MAX_SKEW = 15 * 60
MAX_PRESIGNED_EXPIRY = 7 * 24 * 3600
AMZ_DATE = re.compile(r"^\d{8}T\d{6}Z$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
AUTH_FIELDS = re.compile(r"(\w+)=([^,]*)")


def is_signed(environ: dict) -> bool:
    """Does this request carry AWS auth (header or query), i.e. is it an S3 request?"""
    if environ.get("HTTP_AUTHORIZATION", "").startswith(("AWS4-HMAC-SHA256 ", "AWS ")):
        return True
    query = environ.get("QUERY_STRING", "")
    return "X-Amz-Algorithm=" in query or ("AWSAccessKeyId=" in query and "Signature=" in query)


def uri_encode(value: str, safe: str = "") -> str:
    """AWS's URI encoding: everything but ``A-Za-z0-9-._~`` as %XX of the UTF-8 bytes."""
    return quote(value, safe="-_.~" + safe)


def parse_query(query: str) -> list[tuple[str, str]]:
    pairs = []
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((unquote(name), unquote(value)))
    return pairs


def canonical_query(pairs: list[tuple[str, str]]) -> str:
    encoded = sorted((uri_encode(k), uri_encode(v)) for k, v in pairs if k != "X-Amz-Signature")
    return "&".join(f"{k}={v}" for k, v in encoded)


def canonical_path(environ: dict) -> str:
    """The path as the client sent it (what SDKs sign for S3), else re-encoded."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return urlsplit(raw).path or "/"
    return uri_encode(environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8"), "/")


@functools.lru_cache(maxsize=1024)
def environ_key(name: str) -> str:
    """A header's WSGI environ key (an S3 request looks up some 40 headers by name)."""
    key = name.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key


def header_value(environ: dict, name: str) -> str | None:
    return environ.get(environ_key(name))


def canonical_headers(environ: dict, names: list[str]) -> str:
    lines = []
    for name in names:
        value = header_value(environ, name)
        if value is None:
            raise S3Error("SignatureDoesNotMatch", f"The signed header {name} is missing.")
        lines.append(f"{name}:{' '.join(value.split())}\n")
    return "".join(lines)


@functools.lru_cache(maxsize=4096)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """Four HMACs that only change daily per key: cached (the secrets are in memory anyway)."""
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


def amz_time(stamp: str) -> float:
    """``20260101T120000Z`` as unix time (ValueError if it is not one)."""
    if not AMZ_DATE.match(stamp):
        raise ValueError(stamp)
    fields = (stamp[0:4], stamp[4:6], stamp[6:8], stamp[9:11], stamp[11:13], stamp[13:15])
    return datetime.datetime(*map(int, fields), tzinfo=datetime.UTC).timestamp()


@dataclasses.dataclass
class SignedRequest:
    """What a request claims: whose key, when, what it signed, and the signature."""

    access: str
    date: str  # YYYYMMDD of the scope
    region: str
    service: str
    amz_date: str
    signed_headers: list[str]
    signature: str
    payload_hash: str
    presigned: bool
    expires: int = 0

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def parse_credential(value: str, error: str) -> tuple[str, str, str, str]:
    parts = value.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
        raise S3Error(error, "The credential must be <key>/<date>/<region>/s3/aws4_request.")
    if parts[3] != "s3":
        raise S3Error(error, f"The credential's service must be s3, not {parts[3]!r}.")
    return parts[0], parts[1], parts[2], parts[3]


def parse_request(environ: dict, query: list[tuple[str, str]]) -> SignedRequest:
    header = environ.get("HTTP_AUTHORIZATION", "")
    if header.startswith("AWS ") or any(name == "AWSAccessKeyId" for name, _ in query):
        raise S3Error("InvalidRequest", "Signature Version 2 is not supported; use "
                                        "AWS4-HMAC-SHA256.")
    if header:
        return parse_header(environ, header)
    return parse_presigned(environ, dict(query))


def parse_header(environ: dict, header: str) -> SignedRequest:
    fields = dict(AUTH_FIELDS.findall(header[len(ALGORITHM):]))
    if not header.startswith(ALGORITHM + " ") or not {"Credential", "SignedHeaders",
                                                      "Signature"} <= fields.keys():
        raise S3Error("AuthorizationHeaderMalformed",
                      "The authorization header needs Credential, SignedHeaders and Signature.")
    access, date, region, service = parse_credential(fields["Credential"],
                                                     "AuthorizationHeaderMalformed")
    amz_date = header_value(environ, "x-amz-date") or ""
    if not AMZ_DATE.match(amz_date):
        raise S3Error("AccessDenied", "AWS authentication requires a valid X-Amz-Date header.")
    payload = header_value(environ, "x-amz-content-sha256")
    if payload is None:
        raise S3Error("InvalidRequest", "Missing required header for this request: "
                                        "x-amz-content-sha256")
    if payload != UNSIGNED_PAYLOAD and payload not in STREAMING_PAYLOADS \
            and not SHA256_HEX.match(payload):
        raise S3Error("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                                         "STREAMING-... or a SHA-256 in hex.")
    return SignedRequest(access, date, region, service, amz_date,
                         fields["SignedHeaders"].split(";"), fields["Signature"], payload,
                         presigned=False)


def parse_presigned(environ: dict, query: dict[str, str]) -> SignedRequest:
    error = "AuthorizationQueryParametersError"
    needed = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
              "X-Amz-SignedHeaders", "X-Amz-Signature")
    missing = [name for name in needed if name not in query]
    if missing:
        raise S3Error(error, f"The presigned URL lacks {', '.join(missing)}.")
    if query["X-Amz-Algorithm"] != ALGORITHM:
        raise S3Error(error, f"X-Amz-Algorithm must be {ALGORITHM}.")
    access, date, region, service = parse_credential(query["X-Amz-Credential"], error)
    expires = query["X-Amz-Expires"]
    if not expires.isdigit() or not 0 < int(expires) <= MAX_PRESIGNED_EXPIRY:
        raise S3Error(error, "X-Amz-Expires must be 1 to 604800 seconds.")
    if not AMZ_DATE.match(query["X-Amz-Date"]):
        raise S3Error(error, "X-Amz-Date must be an ISO 8601 basic time (YYYYMMDDTHHMMSSZ).")
    payload = header_value(environ, "x-amz-content-sha256") or UNSIGNED_PAYLOAD
    return SignedRequest(access, date, region, service, query["X-Amz-Date"],
                         query["X-Amz-SignedHeaders"].split(";"), query["X-Amz-Signature"],
                         payload, presigned=True, expires=int(expires))


def check_time(signed: SignedRequest, now: float) -> None:
    when = amz_time(signed.amz_date)
    if signed.amz_date[:8] != signed.date:
        raise S3Error("SignatureDoesNotMatch", "The credential's date is not the request's.")
    if signed.presigned:
        if now > when + signed.expires:
            raise S3Error("AccessDenied", "Request has expired",
                          Expires=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                time.gmtime(when + signed.expires)),
                          ServerTime=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)))
        if when > now + MAX_SKEW:
            raise S3Error("AccessDenied", "Request is not valid yet")
    elif abs(now - when) > MAX_SKEW:
        raise S3Error("RequestTimeTooSkewed",
                      RequestTime=signed.amz_date, MaxAllowedSkewMilliseconds="900000",
                      ServerTime=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)))


def verify(environ: dict, query: list[tuple[str, str]], signed: SignedRequest,
           secret: str) -> bytes:
    """Raises ``SignatureDoesNotMatch`` unless ``signed.signature`` signs this request;
    returns the signing key (aws-chunked uploads sign their chunks with it)."""
    names = signed.signed_headers
    if "host" not in names or names != sorted(set(names)) or any(n != n.lower() for n in names):
        raise S3Error("SignatureDoesNotMatch" if signed.presigned else
                      "AuthorizationHeaderMalformed",
                      "SignedHeaders must be sorted lower-case names including host.")
    canonical = "\n".join([
        environ["REQUEST_METHOD"], canonical_path(environ), canonical_query(query),
        canonical_headers(environ, names), ";".join(names), signed.payload_hash])
    to_sign = "\n".join([ALGORITHM, signed.amz_date, signed.scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = signing_key(secret, signed.date, signed.region, signed.service)
    expected = hmac.digest(key, to_sign.encode(), "sha256").hex()
    if not hmac.compare_digest(expected, signed.signature):
        raise S3Error("SignatureDoesNotMatch")
    return key
