"""TempURL: a signed, expiring URL that lets whoever holds it make one request on one object
(or on any object under a signed prefix) without a token, as Swift's ``tempurl`` does.

The signature (``signatures.py``) is over ``<method>\\n<expires>\\n<path>``, the path being
``/v1/<account>/<container>/<object>`` or ``prefix:/v1/<account>/<container>/<prefix>``, with
``ip=<range>\\n`` in front when ``temp_url_ip_range`` limits the client's address. A HEAD is
allowed by a GET, PUT or POST signature too. A valid one makes the request the key's
(``access.SignedGrant``): its token is dropped, its query too (no ``multipart-manifest``, no
bulk operation rides along), and the headers that would make it reach other objects
(``X-Copy-From``, ``X-Object-Manifest``, ``X-Symlink-Target``) are refused. Anything else
is Swift's 401 ``Temp URL invalid``, before the app below sees the request.
"""

from __future__ import annotations

import calendar
import email.utils
import ipaddress
import time
from urllib.parse import parse_qs, quote

from soko.object.middleware.signatures import (
    act_under,
    digests_info,
    matching_key,
    parse_signature,
    signing_keys,
    text_answer,
    unauthorized,
)
from soko.object.middleware.subrequest import call, object_path
from soko.object.proxy.access import SignedGrant

SIGNABLE_METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")
HEAD_SIGNED_AS = ("HEAD", "GET", "POST", "PUT")
WRITE_METHODS = ("PUT", "POST", "DELETE")
REFUSED_HEADERS = ("X-Object-Manifest", "X-Symlink-Target", "X-Copy-From")
ISO_8601 = "%Y-%m-%dT%H:%M:%SZ"
INVALID = "401 Unauthorized: Temp URL invalid\n"


def environ_key(header: str) -> str:
    key = header.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key


class HeaderRules:
    """Swift's ``*_remove_headers`` with their ``*_allow_headers`` exceptions: names, or
    prefixes ending in ``*``, compared as ``spelled`` spells a header's name."""

    def __init__(self, remove: list[str], allow: list[str], spelled=str.lower):
        self.remove = [spelled(name) for name in remove]
        self.allow = [spelled(name) for name in allow]

    @staticmethod
    def matches(rules: list[str], name: str) -> bool:
        return any(name.startswith(rule[:-1]) if rule.endswith("*") else name == rule
                   for rule in rules)

    def removes(self, name: str) -> bool:
        return self.matches(self.remove, name) and not self.matches(self.allow, name)


def expiry(value: str | None) -> int:
    """``temp_url_expires`` (unix seconds, or ISO 8601 UTC) as unix seconds; 0 if it is
    neither, has passed, or is past the last date the ``Expires`` header can say, in 9999
    (Swift: 500 past its own last one, in year 10000)."""
    try:
        expires = int(value)
    except (TypeError, ValueError):
        try:
            expires = calendar.timegm(time.strptime(value or "", ISO_8601))
        except ValueError:
            return 0
    try:
        email.utils.formatdate(expires, usegmt=True)
    except (OverflowError, OSError, ValueError):
        return 0
    return expires if expires >= time.time() else 0


def client_in(environ: dict, ip_range: str) -> bool:
    try:
        return ipaddress.ip_address(environ.get("REMOTE_ADDR", "")) in ipaddress.ip_network(
            ip_range)
    except ValueError:
        return False


def disposition(kind: str, filename: str) -> str:
    return f"{kind}; filename=\"{quote(filename, safe=' /')}\"; filename*=UTF-8''{quote(filename)}"


class TempURL:
    def __init__(self, app, section):
        self.app = app
        self.digests = frozenset(section.allowed_digests)
        self.methods = frozenset(section.tempurl_methods)
        self.incoming = HeaderRules(section.tempurl_incoming_remove_headers,
                                    section.tempurl_incoming_allow_headers, environ_key)
        self.outgoing = HeaderRules(section.tempurl_outgoing_remove_headers,
                                    section.tempurl_outgoing_allow_headers)

    @classmethod
    def swift_info(cls, section) -> dict:
        return {"methods": list(section.tempurl_methods),
                "incoming_remove_headers": list(section.tempurl_incoming_remove_headers),
                "incoming_allow_headers": list(section.tempurl_incoming_allow_headers),
                "outgoing_remove_headers": list(section.tempurl_outgoing_remove_headers),
                "outgoing_allow_headers": list(section.tempurl_outgoing_allow_headers),
                **digests_info(section)}

    def __call__(self, environ, start_response):
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        method = environ["REQUEST_METHOD"]
        if method == "OPTIONS" or not ("temp_url_sig" in query or "temp_url_expires" in query):
            return self.app(environ, start_response)
        expires = expiry(first(query, "temp_url_expires"))
        grant = self.grant(environ, query, expires) if expires else None
        if grant is None:
            return unauthorized(environ, start_response, INVALID)
        if method in WRITE_METHODS:
            for header in REFUSED_HEADERS:
                if environ_key(header) in environ:
                    return text_answer(environ, start_response, "400 Bad Request",
                                       f"The header {header!r} is not allowed in this tempurl")
        for key in [k for k in environ if self.incoming.removes(k)]:
            del environ[key]
        act_under(environ, grant)
        environ["QUERY_STRING"] = ""
        answer = call(self.app, environ)
        headers = [(k, v) for k, v in answer.header_list if not self.outgoing.removes(k.lower())]
        if method in ("GET", "HEAD") and answer.status // 100 == 2:
            headers = [(k, v) for k, v in headers if k.lower() != "content-disposition"]
            headers += [("Content-Disposition", self.disposition(environ, query, answer)),
                        ("Expires", email.utils.formatdate(expires, usegmt=True))]
        start_response(answer.status_line, headers)
        return answer.body

    def grant(self, environ: dict, query: dict, expires: int) -> SignedGrant | None:
        """What the URL's signature allows, or None if it does not hold for this request."""
        method = environ["REQUEST_METHOD"]
        try:
            digest, signature = parse_signature(first(query, "temp_url_sig") or "")
        except ValueError:
            return None
        parts = object_path(environ)
        if digest not in self.digests or method not in self.methods or parts is None \
                or parts[0] != "v1" or not parts[3].strip("/"):
            return None
        _, account, container, obj = parts
        ip_range = first(query, "temp_url_ip_range")
        if ip_range and not client_in(environ, ip_range):
            return None
        prefix = first(query, "temp_url_prefix")
        if prefix is None:
            path = f"/v1/{account}/{container}/{obj}"
        elif obj.startswith(prefix):
            path = f"prefix:/v1/{account}/{container}/{prefix}"
        else:
            return None
        ip_line = f"ip={ip_range}\n" if ip_range else ""
        messages = [f"{ip_line}{signed_as}\n{expires}\n{path}"
                    for signed_as in (HEAD_SIGNED_AS if method == "HEAD" else (method,))]
        key = matching_key(signing_keys(self.app, environ, account, container, "TU"),
                           messages, digest, signature)
        if key is None:
            return None
        return SignedGrant(account, key.container, write=method in WRITE_METHODS)

    @staticmethod
    def disposition(environ: dict, query: dict, answer) -> str:
        """``inline``/``filename`` from the URL, else the object's own, else an attachment
        named after the object."""
        filename = first(query, "filename")
        if "inline" in query:
            value = disposition("inline", filename) if filename else "inline"
        elif filename:
            value = disposition("attachment", filename)
        elif answer.headers.get("content-disposition"):
            value = answer.headers["content-disposition"]
        else:
            value = disposition("attachment", object_path(environ)[3].rstrip("/")
                                .rsplit("/", 1)[-1])
        return value.replace("\n", "%0A")


def first(query: dict, name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None
