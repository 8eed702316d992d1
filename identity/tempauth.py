"""Swift's tempauth v1 (``GET /auth/v1.0``), backed by the identity store.

python-swiftclient's ``-A/-U/-K`` (and ``swiftclient.client.get_auth``) send
``X-Auth-User: <project>:<user>`` and ``X-Auth-Key: <password>``; the answer is a soko token
in ``X-Auth-Token`` (the same token every soko API accepts) and ``X-Storage-Url``
``<proxy>/v1/AUTH_<project_id>``. The object-store proxy mounts this resource::

    from soko.identity.tempauth import TempAuth
    app.add_route("/auth/v1.0", TempAuth.from_config(config, storage_url_base=None))

With ``storage_url_base=None`` the storage URL is built from the request's own scheme and
host, as Swift's tempauth does; pass the proxy's public URL to pin it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import falcon

from soko.common.config import Config
from soko.common.errors import Unauthorized


class PasswordAuthenticator(Protocol):
    """What TempAuth needs from identity (``IdentityManager`` is one)."""

    def authenticate(self, *, password: str, user_name: str | None = None,
                     project_name: str | None = None, **kwargs): ...


class TempAuth:
    public = True  # the credentials are the request; no token needed

    def __init__(self, authenticator: PasswordAuthenticator,
                 storage_url_base: str | Callable[[falcon.Request], str] | None = None,
                 *, reseller_prefix: str = "AUTH_", clock: Callable[[], float] | None = None):
        self.authenticator = authenticator
        self.storage_url_base = storage_url_base
        self.reseller_prefix = reseller_prefix
        self.clock = clock or getattr(authenticator, "clock", None)

    @classmethod
    def from_config(cls, config: Config, storage_url_base=None, **kwargs) -> TempAuth:
        from soko.identity.manager import IdentityManager

        return cls(IdentityManager.from_config(config), storage_url_base, **kwargs)

    def storage_url(self, req: falcon.Request, project_id: str) -> str:
        base = self.storage_url_base
        if callable(base):
            base = base(req)
        if base is None:
            base = req.prefix
        return f"{base.rstrip('/')}/v1/{self.reseller_prefix}{project_id}"

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        account = req.get_header("X-Auth-User") or req.get_header("X-Storage-User")
        key = req.get_header("X-Auth-Key") or req.get_header("X-Storage-Pass")
        if not account or not key:
            raise Unauthorized("Send X-Auth-User: <project>:<user> and X-Auth-Key: <password>.")
        project_name, sep, user_name = account.partition(":")
        if not sep or not project_name or not user_name:
            raise Unauthorized("X-Auth-User must be <project>:<user>, e.g. demo:demo.")
        issued = self.authenticator.authenticate(password=key, user_name=user_name,
                                                 project_name=project_name)
        payload = issued.payload
        url = self.storage_url(req, payload.project_id)
        now = self.clock() if self.clock else payload.issued_at
        resp.status = falcon.HTTP_200
        resp.set_header("X-Auth-Token", issued.token)
        resp.set_header("X-Storage-Token", issued.token)
        resp.set_header("X-Storage-Url", url)
        resp.set_header("X-Auth-Token-Expires", str(max(0, math.floor(payload.expires_at - now))))
        # No body: Swift's tempauth answers the headers alone (Content-Length: 0).
