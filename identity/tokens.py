"""Tokens: Fernet-encrypted msgpack payloads, verified locally by every service.

A token carries who (user id and name), where (project id and name), with what roles,
when it was issued and when it expires, and a random token id. Any process holding the key
repository verifies it without asking ``soko-identity``; revocations come from a table in
the identity database that each validator re-reads at most ``revocation_refresh`` seconds
apart (2 s by default), so a revoked token stops working everywhere within that bound. If
the table cannot be read for ``revocation_max_staleness`` seconds, validators refuse every
token (503) rather than accept one that may have been revoked. ``soko-identity`` itself
also asks the table about every token presented to it, so it refuses a revoked token at
once on all its workers.

Other services build their validator with ``FernetTokenValidator.from_config(config)``.
This module imports no web framework.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
from collections.abc import Callable

import msgpack
import sqlalchemy
from cryptography.fernet import InvalidToken

from soko.common.auth import AuthContext
from soko.common.config import Config
from soko.common.errors import ServiceUnavailable, Unauthorized
from soko.identity.keys import FernetKeyRepository, KeyRepositoryError

log = logging.getLogger("soko.identity.tokens")

PAYLOAD_VERSION = 1
MAX_TOKEN_LENGTH = 8192


@dataclasses.dataclass(frozen=True)
class TokenPayload:
    token_id: str  # 32 hex chars; what a single-token revocation names
    user_id: str
    user_name: str
    project_id: str
    project_name: str
    roles: tuple[str, ...]
    issued_at: float
    expires_at: float
    methods: tuple[str, ...] = ("password",)

    def pack(self) -> bytes:
        return msgpack.packb([
            PAYLOAD_VERSION, bytes.fromhex(self.token_id), self.user_id, self.user_name,
            self.project_id, self.project_name, list(self.roles), self.issued_at,
            self.expires_at, list(self.methods),
        ])

    @classmethod
    def unpack(cls, data: bytes) -> TokenPayload:
        try:
            fields = msgpack.unpackb(data)
            version, token_id, user_id, user_name, project_id, project_name, roles, \
                issued_at, expires_at, methods = fields
            if version != PAYLOAD_VERSION:
                raise ValueError(f"payload version {version}")
            return cls(token_id.hex(), user_id, user_name, project_id, project_name,
                       tuple(roles), float(issued_at), float(expires_at), tuple(methods))
        except (ValueError, TypeError, AttributeError, msgpack.UnpackException):
            raise Unauthorized("The token's payload is not one soko understands.") from None

    def auth_context(self) -> AuthContext:
        return AuthContext(self.user_id, self.user_name, self.project_id, self.project_name,
                           frozenset(self.roles), self.expires_at)


@dataclasses.dataclass(frozen=True)
class IssuedToken:
    token: str  # what the client sends in X-Auth-Token
    payload: TokenPayload


class TokenCodec:
    """Signs and opens tokens with the key repository (no expiry or revocation checks)."""

    def __init__(self, keys: FernetKeyRepository):
        self.keys = keys

    def encode(self, payload: TokenPayload) -> str:
        return self.keys.fernet().encrypt_at_time(payload.pack(), int(payload.issued_at)).decode()

    def decode(self, token: str) -> TokenPayload:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise Unauthorized("The token is empty or too long to be a soko token.")
        try:
            fernet = self.keys.fernet()
        except KeyRepositoryError as exc:
            log.error("cannot verify tokens: %s", exc)
            raise ServiceUnavailable("This service cannot verify tokens right now "
                                     "(its key repository is unavailable).") from None
        try:
            data = fernet.decrypt(token.encode("ascii", "strict"))
        except (InvalidToken, UnicodeEncodeError, ValueError, TypeError):
            raise Unauthorized(
                "The token is not valid: malformed, tampered with, or signed with a key "
                "this service does not hold. Get a new token."
            ) from None
        return TokenPayload.unpack(data)


def new_payload(*, user_id: str, user_name: str, project_id: str, project_name: str,
                roles, ttl: float, now: float, methods=("password",),
                expires_at: float | None = None) -> TokenPayload:
    expiry = now + ttl if expires_at is None else min(expires_at, now + ttl)
    return TokenPayload(secrets.token_hex(16), user_id, user_name, project_id, project_name,
                        tuple(roles), now, expiry, tuple(methods))


class RevocationList:
    """The revocation table as seen by one process, re-read at most ``refresh`` s apart.

    The whole unexpired list is re-read each time (it holds only revocations younger than
    the token lifetime, so it stays small), which also sees rows that commit out of id
    order on PostgreSQL.
    """

    def __init__(self, engine: sqlalchemy.Engine, *, refresh: float = 2.0,
                 max_staleness: float = 30.0, clock: Callable[[], float] = time.time):
        self.engine = engine
        self.refresh = refresh
        self.max_staleness = max_staleness
        self.clock = clock
        self._lock = threading.Lock()
        self._loaded_at = float("-inf")  # monotonic
        self._schema_checked = False
        self.token_ids: set[str] = set()
        self.users: dict[str, float] = {}
        self.projects: dict[str, float] = {}
        self.pairs: dict[tuple[str, str], float] = {}

    def note(self, *, token_id: str | None = None, user_id: str | None = None,
             project_id: str | None = None, revoked_at: float) -> None:
        """Applies a revocation this process just committed, without waiting to re-read."""
        with self._lock:
            self._add(token_id, user_id, project_id, revoked_at)

    def _add(self, token_id, user_id, project_id, revoked_at) -> None:
        if token_id:
            self.token_ids.add(token_id)
            return
        if user_id and project_id:
            table, key = self.pairs, (user_id, project_id)
        elif user_id:
            table, key = self.users, user_id
        elif project_id:
            table, key = self.projects, project_id
        else:
            return
        table[key] = max(table.get(key, float("-inf")), revoked_at)

    def is_revoked(self, payload: TokenPayload) -> bool:
        self._maybe_refresh()
        never = float("-inf")
        return (
            payload.token_id in self.token_ids
            or payload.issued_at <= self.users.get(payload.user_id, never)
            or payload.issued_at <= self.projects.get(payload.project_id, never)
            or payload.issued_at <= self.pairs.get((payload.user_id, payload.project_id), never)
        )

    def _maybe_refresh(self) -> None:
        if time.monotonic() - self._loaded_at < self.refresh:
            return
        with self._lock:
            now = time.monotonic()
            if now - self._loaded_at < self.refresh:
                return
            try:
                self._reload()
                self._loaded_at = now
            except sqlalchemy.exc.SQLAlchemyError as exc:
                stale_for = now - self._loaded_at
                log.warning("cannot re-read the revocation list (stale for %.1f s): %s",
                            stale_for, exc.__class__.__name__)
                if stale_for > self.max_staleness:
                    raise ServiceUnavailable(
                        "Token revocations cannot be checked right now (the identity "
                        "database is unreachable); try again shortly."
                    ) from None

    def _reload(self) -> None:
        from soko.identity.models import Revocation, create_schema

        if not self._schema_checked:
            create_schema(self.engine)
            self._schema_checked = True
        table = Revocation.__table__
        query = sqlalchemy.select(
            table.c.token_id, table.c.user_id, table.c.project_id, table.c.revoked_at
        ).where(table.c.prune_after > self.clock())
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        self.token_ids, self.users, self.projects, self.pairs = set(), {}, {}, {}
        for row in rows:
            self._add(row.token_id, row.user_id, row.project_id, row.revoked_at)


class ImmediateRevocationList(RevocationList):
    """Identity's own view: besides the list above, it asks the table about each token
    presented to identity itself, so a revocation made by any identity worker holds at once
    on all of them (one small query per request; identity reads its database anyway).
    Other services keep the cheaper bounded refresh."""

    def is_revoked(self, payload: TokenPayload) -> bool:
        return super().is_revoked(payload) or self._in_table(payload)

    def _in_table(self, payload: TokenPayload) -> bool:
        from soko.identity.models import Revocation

        t = Revocation.__table__
        user, project = t.c.user_id == payload.user_id, t.c.project_id == payload.project_id
        sweeping = sqlalchemy.and_(  # a user, a project, or a user on a project
            t.c.token_id.is_(None), t.c.revoked_at >= payload.issued_at,
            sqlalchemy.or_(sqlalchemy.and_(user, t.c.project_id.is_(None) | project),
                           sqlalchemy.and_(t.c.user_id.is_(None), project)))
        query = (sqlalchemy.select(t.c.id)
                 .where(t.c.prune_after > self.clock(),
                        sqlalchemy.or_(t.c.token_id == payload.token_id, sweeping))
                 .limit(1))
        try:
            with self.engine.connect() as conn:
                return conn.execute(query).first() is not None
        except sqlalchemy.exc.SQLAlchemyError as exc:
            # The bounded list still holds, and refuses every token once it is too stale.
            log.warning("cannot ask the revocation table: %s", exc.__class__.__name__)
            return False


class FernetTokenValidator:
    """``common.auth.TokenValidator`` for soko tokens: local verification, no round trip."""

    def __init__(self, codec: TokenCodec, revocations: RevocationList,
                 clock: Callable[[], float] = time.time):
        self.codec = codec
        self.revocations = revocations
        self.clock = clock

    @classmethod
    def from_config(cls, config: Config, *, clock: Callable[[], float] = time.time,
                    engine: sqlalchemy.Engine | None = None) -> FernetTokenValidator:
        """The validator any service builds from the shared config and data dir."""
        from soko.common.db import make_engine
        from soko.identity.service import db_url, identity_section, key_dir

        section = identity_section(config)
        keys = FernetKeyRepository(key_dir(config), max_active=section.max_active_keys,
                                   reload_interval=section.revocation_refresh)
        engine = engine or make_engine(db_url(config))
        revocations = RevocationList(engine, refresh=section.revocation_refresh,
                                     max_staleness=section.revocation_max_staleness, clock=clock)
        return cls(TokenCodec(keys), revocations, clock)

    def payload(self, token: str) -> TokenPayload:
        """Opens and checks the token: signature, expiry, revocation."""
        payload = self.codec.decode(token)
        if payload.expires_at <= self.clock():
            raise Unauthorized(
                f"The token expired at {iso_time(payload.expires_at)}; get a new one."
            )
        if self.revocations.is_revoked(payload):
            raise Unauthorized("The token has been revoked; get a new one.")
        return payload

    def validate(self, token: str) -> AuthContext:
        return self.payload(token).auth_context()


def iso_time(unix: float) -> str:
    """Keystone's timestamp shape: ``2024-05-01T12:00:00.000000Z``."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(unix))
    return f"{stamp}.{int((unix % 1) * 1e6):06d}Z"
