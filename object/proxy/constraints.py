"""Swift's API constraints: what the proxy refuses with a 4xx before anything is stored.

The same numbers are published at ``GET /info`` (as Swift does), so clients can check
before they send.
"""

from __future__ import annotations

from soko.common.errors import BadRequest, NotFound, PayloadTooLarge, PreconditionFailed
from soko.object.shared.header_text import header_text, wire_length
from soko.object.shared.limits import (
    DEFAULT_POLICY,
    MAX_META_COUNT,
    MAX_META_NAME_LENGTH,
    MAX_META_OVERALL_SIZE,
    MAX_META_VALUE_LENGTH,
)

MAX_FILE_SIZE = 5 * 1024**3
MAX_HEADER_SIZE = 8192
MAX_OBJECT_NAME_LENGTH = 1024
CONTAINER_LISTING_LIMIT = 10_000
ACCOUNT_LISTING_LIMIT = 10_000
MAX_ACCOUNT_NAME_LENGTH = 256
MAX_CONTAINER_NAME_LENGTH = 256
MAX_DELETE_AT = 9_999_999_999  # Swift's expiry times are 10 digits
MAX_REQUEST_LINE = 8192
PLAIN = "text/plain"  # the media type of Swift's constraint texts (the others are HTML)

SWIFT_INFO = {
    "max_file_size": MAX_FILE_SIZE,
    "max_meta_name_length": MAX_META_NAME_LENGTH,
    "max_meta_value_length": MAX_META_VALUE_LENGTH,
    "max_meta_count": MAX_META_COUNT,
    "max_meta_overall_size": MAX_META_OVERALL_SIZE,
    "max_header_size": MAX_HEADER_SIZE,
    "max_request_line": MAX_REQUEST_LINE,
    "max_object_name_length": MAX_OBJECT_NAME_LENGTH,
    "container_listing_limit": CONTAINER_LISTING_LIMIT,
    "account_listing_limit": ACCOUNT_LISTING_LIMIT,
    "max_account_name_length": MAX_ACCOUNT_NAME_LENGTH,
    "max_container_name_length": MAX_CONTAINER_NAME_LENGTH,
    "extra_header_count": 0,
    "valid_api_versions": ["v1", "v1.0"],
    "auto_create_account_prefix": ".",
    "allow_account_management": False,
    "account_autocreate": True,
    "policies": [{"name": DEFAULT_POLICY, "aliases": DEFAULT_POLICY, "default": True}],
}


def check_utf8(raw_path: str, allow_nul: bool = False) -> None:
    """WSGI hands the path over as latin-1: it must be valid UTF-8 without NUL (412, as Swift;
    ``allow_nul`` for a middleware's reserved names)."""
    text = header_text(raw_path)
    if text is None or ("\x00" in text and not allow_nul):
        raise PreconditionFailed("Invalid UTF8 or contains NULL")


def check_content_type(value: str) -> None:
    """A content type is listed as text: UTF-8 without NUL (``check_object_creation``)."""
    text = header_text(value)
    if text is None or "\x00" in text:
        raise BadRequest("Invalid Content-Type", content_type=PLAIN)


def check_names(account: str, container: str | None = None, obj: str | None = None, *,
                creating: bool = False) -> None:
    """Name lengths in bytes. An account name over the limit is 400 (Swift's account
    controller); a longer container or object name names nothing that can exist, so 404 —
    but 400 with Swift's text when the request creates it (the last name given: a
    container PUT; an object PUT or a COPY's destination, ``check_object_creation``)."""
    if len(account.encode()) > MAX_ACCOUNT_NAME_LENGTH:
        raise BadRequest(f"Account name length of {len(account.encode())} longer than "
                         f"{MAX_ACCOUNT_NAME_LENGTH}")
    if container is not None:
        if not container:
            raise NotFound()  # ``/v1/<a>//<o>``: Swift's split_path refuses it
        if len(container.encode()) > MAX_CONTAINER_NAME_LENGTH:
            if not creating or obj is not None:
                raise NotFound()
            raise BadRequest(f"Container name length of {len(container.encode())} longer than "
                             f"{MAX_CONTAINER_NAME_LENGTH}")
    if obj is not None and len(obj.encode()) > MAX_OBJECT_NAME_LENGTH:
        if not creating:
            raise NotFound()
        raise BadRequest(f"Object name length of {len(obj.encode())} longer than "
                         f"{MAX_OBJECT_NAME_LENGTH}", content_type=PLAIN)


def check_metadata(headers: dict[str, str], kind: str) -> None:
    """``X-<Kind>-Meta-*`` limits: name and value length, item count, overall size, each in
    bytes as sent (400 with Swift's ``check_metadata`` texts, which name a header as
    ``x-<kind>-meta-Title-Cased``); any header value over ``MAX_HEADER_SIZE`` too. Header
    names are ASCII tokens (the HTTP parser refuses others)."""
    prefix = f"x-{kind.lower()}-meta-"
    count = size = 0
    for key, value in headers.items():
        if wire_length(value) > MAX_HEADER_SIZE:
            raise BadRequest(f"Header value too long: {key.title()[:MAX_META_NAME_LENGTH]}",
                             content_type=PLAIN)
        if not key.lower().startswith(prefix):
            continue
        name = key.title()[len(prefix):]
        if not name:
            raise BadRequest("Metadata name cannot be empty", content_type=PLAIN)
        if kind.lower() != "object" and header_text(value) is None:
            raise BadRequest("Metadata must be valid UTF-8", content_type=PLAIN)
        count += 1
        size += len(name) + wire_length(value)
        if len(name) > MAX_META_NAME_LENGTH:
            raise BadRequest(f"Metadata name too long: {prefix}{name}", content_type=PLAIN)
        if wire_length(value) > MAX_META_VALUE_LENGTH:
            raise BadRequest(f"Metadata value longer than {MAX_META_VALUE_LENGTH}: "
                             f"{prefix}{name}", content_type=PLAIN)
        if count > MAX_META_COUNT:
            raise BadRequest(f"Too many metadata items; max {MAX_META_COUNT}",
                             content_type=PLAIN)
        if size > MAX_META_OVERALL_SIZE:
            raise BadRequest(f"Total metadata too large; max {MAX_META_OVERALL_SIZE}",
                             content_type=PLAIN)


def check_policy(name: str | None) -> None:
    """``X-Storage-Policy`` on a container PUT must name a policy (any case), as Swift's."""
    if name is not None and name.upper() != DEFAULT_POLICY.upper():
        raise BadRequest(f"Invalid X-Storage-Policy '{name}'", content_type=PLAIN)


def check_object_size(content_length: int | None) -> None:
    if content_length is not None and content_length > MAX_FILE_SIZE:
        raise PayloadTooLarge("Your request is too large.", content_type=PLAIN)
