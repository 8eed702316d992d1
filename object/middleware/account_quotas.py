"""Account quotas (Swift's ``account_quotas``): ``X-Account-Meta-Quota-Bytes`` (or
``X-Account-Quota-Bytes``) caps the bytes an account holds. Only a reseller admin sets it
(anyone else: 403, a value that is not a whole number: 400, nothing changed), so a
project cannot lift the cap its operator put; answers show it as ``X-Account-Quota-Bytes``
too. An object write that would take the account over is refused with 413 and nothing
stored (``quota_writes`` says what a write counts); a reseller admin's writes are not
capped."""

from __future__ import annotations

from soko.common.auth import AUTH_ENVIRON_KEY
from soko.common.errors import BadRequest, Forbidden
from soko.object.middleware.quota_writes import HTML, Usage, exceeds, refuse, upload_of
from soko.object.middleware.subrequest import request_path
from soko.object.proxy.access import AccessRules
from soko.object.proxy.swift_errors import swift_page

QUOTA_KEY = "HTTP_X_ACCOUNT_META_QUOTA_BYTES"  # where the quota is kept: user metadata
# What sets it, the first given winning: a removal, then Swift's new name, then the old.
SETTING_KEYS = ("HTTP_X_REMOVE_ACCOUNT_QUOTA_BYTES", "HTTP_X_REMOVE_ACCOUNT_META_QUOTA_BYTES",
                "HTTP_X_ACCOUNT_QUOTA_BYTES", QUOTA_KEY)


class AccountQuotas:
    def __init__(self, app, section=None):
        self.app = app
        self.reseller_roles = AccessRules.from_section(section).reseller_admin_roles \
            if section else AccessRules().reseller_admin_roles
        self.usage = Usage(app, ("x-account-meta-quota-bytes",),
                           section.container_info_ttl if section else 5.0)

    @classmethod
    def swift_info(cls, section=None) -> dict:
        return {}

    def is_reseller(self, environ: dict) -> bool:
        auth = environ.get(AUTH_ENVIRON_KEY)
        return auth is not None and bool(
            {role.lower() for role in auth.roles} & self.reseller_roles)

    def __call__(self, environ, start_response):
        path = request_path(environ)
        if path and not path[2] and not path[3]:
            if environ["REQUEST_METHOD"] in ("PUT", "POST"):
                self.set_quota(environ, f"/{path[0]}/{path[1]}")
            return self.app(environ, quota_shown(start_response))
        if self.is_reseller(environ):
            return self.app(environ, start_response)
        upload = upload_of(self.app, environ)
        if upload is not None:
            headers = self.usage.read(environ, f"/{upload.version}/{upload.account}")
            if headers is not None and exceeds(headers.get("x-account-meta-quota-bytes"),
                                               headers.get("x-account-bytes-used"),
                                               upload.size):
                refuse(environ, upload)
        return self.app(environ, start_response)

    def set_quota(self, environ: dict, url: str) -> None:
        """The quota an account update sets, checked, and put where it is kept."""
        given = [key for key in SETTING_KEYS if key in environ]
        if not given:
            return
        if not self.is_reseller(environ):
            raise Forbidden(swift_page(403), content_type=HTML)
        value = "" if "REMOVE" in given[0] else environ[given[0]]
        if value and not (value.isascii() and value.isdigit()):
            raise BadRequest(swift_page(400), content_type=HTML)
        for key in given:
            del environ[key]
        environ[QUOTA_KEY] = value  # empty: removed
        self.usage.forget(url)


def quota_shown(start_response):
    """The account's answer with its quota also under Swift's newer name."""
    def start(status, headers, exc_info=None):
        quota = [v for k, v in headers if k.lower() == "x-account-meta-quota-bytes"]
        return start_response(status, [*headers, *(("X-Account-Quota-Bytes", v)
                                                    for v in quota)], exc_info)
    return start
