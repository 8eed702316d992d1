"""A small HTTP client for ``soko-identity`` (what ``soko identity`` uses).

It also satisfies ``tempauth.PasswordAuthenticator``, so an object-store proxy on a host
without the identity database can serve tempauth by asking ``soko-identity`` over HTTP:
``TempAuth(IdentityClient(auth_url), storage_url_base)``.
"""

from __future__ import annotations

import datetime

import requests

from soko.common.errors import ServiceUnavailable, Unauthorized
from soko.identity.tokens import IssuedToken, TokenPayload


class IdentityClientError(RuntimeError):
    """The identity service answered with an error (or did not answer); says which."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def parse_time(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def base_url(auth_url: str) -> str:
    """``http://host:5000`` from ``http://host:5000``, ``.../v3`` or ``.../v3/``."""
    url = auth_url.rstrip("/")
    return url[: -len("/v3")] if url.endswith("/v3") else url


def error_message(resp: requests.Response) -> str:
    try:
        return resp.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"{resp.status_code} {resp.reason}"


class IdentityClient:
    def __init__(self, auth_url: str, *, username: str | None = None,
                 password: str | None = None, project_name: str | None = None,
                 timeout: float = 30.0, session: requests.Session | None = None):
        self.base = base_url(auth_url)
        self.username = username
        self.password = password
        self.project_name = project_name
        self.timeout = timeout
        self.http = session or requests.Session()
        self._token: str | None = None

    def login(self, *, username: str, password: str, project_name: str | None,
              with_catalog: bool = True) -> tuple[str, dict]:
        """POST /v3/auth/tokens with the password method: (token, body)."""
        auth: dict = {"identity": {"methods": ["password"], "password": {"user": {
            "name": username, "domain": {"id": "default"}, "password": password}}}}
        if project_name:
            auth["scope"] = {"project": {"name": project_name, "domain": {"id": "default"}}}
        url = f"{self.base}/v3/auth/tokens" + ("" if with_catalog else "?nocatalog")
        try:
            resp = self.http.post(url, json={"auth": auth}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise IdentityClientError(f"cannot reach {self.base}: {exc.__class__.__name__}") \
                from None
        if resp.status_code != 201:
            raise IdentityClientError(error_message(resp), resp.status_code)
        return resp.headers["X-Subject-Token"], resp.json()

    def issue_token(self) -> tuple[str, dict]:
        if not self.username or self.password is None:
            raise IdentityClientError("no credentials: set OS_USERNAME and OS_PASSWORD")
        token, body = self.login(username=self.username, password=self.password,
                                 project_name=self.project_name)
        self._token = token
        return token, body

    def token(self) -> str:
        if self._token is None:
            self.issue_token()
        return self._token

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        """An authenticated call; raises ``IdentityClientError`` on any 4xx/5xx."""
        headers = {"X-Auth-Token": self.token(), **kwargs.pop("headers", {})}
        try:
            resp = self.http.request(method, self.base + path, headers=headers,
                                     timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise IdentityClientError(f"cannot reach {self.base}: {exc.__class__.__name__}") \
                from None
        if resp.status_code >= 400:
            raise IdentityClientError(error_message(resp), resp.status_code)
        return resp

    # -- tempauth.PasswordAuthenticator --------------------------------------------------

    def authenticate(self, *, password: str, user_name: str | None = None,
                     project_name: str | None = None, **_ignored) -> IssuedToken:
        try:
            token, body = self.login(username=user_name, password=password,
                                     project_name=project_name, with_catalog=False)
        except IdentityClientError as exc:
            if exc.status in (400, 401):
                raise Unauthorized(str(exc)) from None
            raise ServiceUnavailable(f"identity service: {exc}") from None
        t = body["token"]
        payload = TokenPayload(
            token_id=t["audit_ids"][0], user_id=t["user"]["id"], user_name=t["user"]["name"],
            project_id=t["project"]["id"], project_name=t["project"]["name"],
            roles=tuple(r["name"] for r in t["roles"]), issued_at=parse_time(t["issued_at"]),
            expires_at=parse_time(t["expires_at"]), methods=tuple(t["methods"]),
        )
        return IssuedToken(token, payload)
