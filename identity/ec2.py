"""EC2-style credentials: the access/secret key pairs S3 clients sign requests with.

Identity keeps them (``Ec2Credentials``: create, list, delete) with the secret encrypted at
rest by Fernet (AES-128-CBC + HMAC-SHA256, an AEAD construction) under its own key
repository, ``<data_dir>/identity/credential-keys`` (``credential_key_dir``). It is separate
from the token keys on purpose: token keys are rotated and pruned within hours, which would
leave stored secrets undecryptable.

The object proxy checks S3 signatures itself, as it verifies Fernet tokens: it reads a
credential from the identity database by its access key (``Ec2Resolver``), together with
the user's roles on the project, and trusts what it read for ``revocation_refresh`` seconds
(2 s by default), the same bound within which a revoked token stops working. So deleting a
credential, disabling its user or project, or removing the user's role stops its requests
within that bound, and there is no round trip to ``soko-identity`` per request.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy
from cryptography.fernet import InvalidToken
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from soko.common.auth import AuthContext
from soko.common.config import Config
from soko.common.db import make_engine, make_sessionmaker, session_scope
from soko.common.errors import BadRequest, Forbidden, NotFound, ServiceUnavailable
from soko.common.ttl_cache import TtlCache
from soko.identity.keys import FernetKeyRepository, KeyRepositoryError
from soko.identity.models import Assignment, Credential, Project, User
from soko.identity.roles import IMPLIED_ROLES, ROLES
from soko.identity.service import db_url, identity_dir, identity_section

ACCESS_PATTERN = re.compile(r"^[A-Za-z0-9]{16,128}$")
SECRET_PATTERN = re.compile(r"^[\x21-\x7e]{16,128}$")


def credential_key_dir(config: Config) -> Path:
    return identity_dir(config) / "credential-keys"


def credential_id(access: str) -> str:
    """Keystone's id of an ``ec2`` credential: the SHA-256 of its access key."""
    return hashlib.sha256(access.encode()).hexdigest()


class CredentialCipher:
    """Encrypts and opens credential blobs with the credential key repository."""

    def __init__(self, keys: FernetKeyRepository):
        self.keys = keys

    @classmethod
    def from_config(cls, config: Config, *, create: bool = False) -> CredentialCipher:
        keys = FernetKeyRepository(credential_key_dir(config))
        if create:
            keys.initialize()
        return cls(keys)

    def encrypt(self, blob: dict) -> str:
        return self.keys.fernet().encrypt(json.dumps(blob).encode()).decode()

    def decrypt(self, token: str) -> dict:
        try:
            return json.loads(self.keys.fernet().decrypt(token.encode()))
        except (InvalidToken, ValueError, KeyRepositoryError):
            raise ServiceUnavailable("A stored credential cannot be decrypted with this host's "
                                     "credential keys.") from None


def credential_record(row: Credential, blob: dict) -> dict:
    """Keystone's ``/v3/credentials`` shape (``blob`` is a JSON string there)."""
    return {"id": row.id, "type": row.type, "user_id": row.user_id,
            "project_id": row.project_id, "blob": json.dumps(blob)}


def os_ec2_record(record: dict) -> dict:
    """The ``/v3/users/{id}/credentials/OS-EC2`` shape of the same credential."""
    blob = json.loads(record["blob"])
    return {"user_id": record["user_id"], "tenant_id": record["project_id"],
            "access": blob["access"], "secret": blob["secret"], "trust_id": None}


def checked_blob(blob: object) -> dict:
    """The access and secret a client chose (both generated when absent)."""
    if blob in (None, ""):
        blob = {}
    if isinstance(blob, str):
        try:
            blob = json.loads(blob)
        except ValueError:
            raise BadRequest("credential.blob must be JSON with access and secret.") from None
    if not isinstance(blob, dict):
        raise BadRequest("credential.blob must be a JSON object.")
    access = blob.get("access") or secrets.token_hex(16)
    secret = blob.get("secret") or secrets.token_hex(20)
    if not isinstance(access, str) or not ACCESS_PATTERN.match(access):
        raise BadRequest("The access key must be 16-128 letters and digits.")
    if not isinstance(secret, str) or not SECRET_PATTERN.match(secret):
        raise BadRequest("The secret must be 16-128 printable ASCII characters, no spaces.")
    return {"access": access, "secret": secret}


class Ec2Credentials:
    """Identity's side: the credentials table (no HTTP)."""

    def __init__(self, sessions: sessionmaker[Session], cipher: CredentialCipher):
        self.sessions = sessions
        self.cipher = cipher

    @classmethod
    def from_config(cls, config: Config, *,
                    engine: sqlalchemy.Engine | None = None) -> Ec2Credentials:
        engine = engine or make_engine(db_url(config))
        return cls(make_sessionmaker(engine), CredentialCipher.from_config(config, create=True))

    def create(self, user_id: str, project_id: str, blob: object = None) -> dict:
        blob = checked_blob(blob)
        with session_scope(self.sessions) as s:
            user, project = s.get(User, user_id), s.get(Project, project_id)
            if user is None or project is None:
                raise NotFound("No such user or project.")
            if not s.scalar(select(Assignment.role).where(Assignment.user_id == user.id,
                                                          Assignment.project_id == project.id)):
                raise Forbidden(f"User {user.name!r} has no role on project {project.name!r}.")
            row_id = credential_id(blob["access"])
            if s.get(Credential, row_id) is not None:
                raise BadRequest("A credential with this access key exists.")
            row = Credential(id=row_id, user_id=user.id, project_id=project.id, type="ec2",
                             encrypted_blob=self.cipher.encrypt(blob), created_at=time.time())
            s.add(row)
            return credential_record(row, blob)

    def list(self, user_id: str | None = None) -> list[dict]:
        query = select(Credential).order_by(Credential.created_at)
        if user_id is not None:
            query = query.where(Credential.user_id == user_id)
        with session_scope(self.sessions) as s:
            return [credential_record(row, self.cipher.decrypt(row.encrypted_blob))
                    for row in s.scalars(query)]

    def get(self, cred_id: str) -> dict:
        with session_scope(self.sessions) as s:
            row = s.get(Credential, cred_id)
            if row is None:
                raise NotFound(f"No credential {cred_id:.64}.")
            return credential_record(row, self.cipher.decrypt(row.encrypted_blob))

    def delete(self, cred_id: str) -> None:
        with session_scope(self.sessions) as s:
            row = s.get(Credential, cred_id)
            if row is None:
                raise NotFound(f"No credential {cred_id:.64}.")
            s.delete(row)


class UnknownAccessKey(LookupError):
    """No usable credential has this access key (none, deleted, or its user lost access)."""


class Ec2Resolver:
    """The proxy's side: access key → (secret, who), re-read at most ``ttl`` seconds apart
    (by one thread of the worker at a time: ``common.ttl_cache``)."""

    def __init__(self, engine: sqlalchemy.Engine, cipher: CredentialCipher, ttl: float,
                 clock: Callable[[], float] = time.monotonic):
        self.engine = engine
        self.cipher = cipher
        self.ttl = ttl
        self._cache = TtlCache(ttl, clock=clock)

    @classmethod
    def from_config(cls, config: Config) -> Ec2Resolver:
        return cls(make_engine(db_url(config)), CredentialCipher.from_config(config),
                   identity_section(config).revocation_refresh)

    def resolve(self, access: str) -> tuple[str, AuthContext]:
        found = self._cache.get(access, lambda: self._read(access))
        if found is None:
            raise UnknownAccessKey(access)
        return found

    def _read(self, access: str) -> tuple[str, AuthContext] | None:
        if not ACCESS_PATTERN.match(access):
            return None
        try:  # one query, no ORM session: a hot key is re-read every ttl per worker
            with self.engine.connect() as conn:
                rows = conn.execute(RESOLVE_QUERY, {"id": credential_id(access)}).all()
        except sqlalchemy.exc.SQLAlchemyError:
            raise ServiceUnavailable("Credentials cannot be checked right now (the identity "
                                     "database is unreachable).") from None
        if not rows or not rows[0].user_enabled or not rows[0].project_enabled:
            return None
        held = {row.role for row in rows}
        roles = frozenset(r for role in ROLES if role in held for r in IMPLIED_ROLES[role])
        if not roles:
            return None
        first = rows[0]
        secret = self.cipher.decrypt(first.encrypted_blob)["secret"]
        who = AuthContext(first.user_id, first.user_name, first.project_id, first.project_name,
                          roles, time.time() + self.ttl)
        return secret, who


# A credential with its user, project and the user's roles on it (a row per role; none
# without a role, and none if the user or project is gone).
RESOLVE_QUERY = (
    select(Credential.encrypted_blob, User.id.label("user_id"), User.name.label("user_name"),
           User.enabled.label("user_enabled"), Project.id.label("project_id"),
           Project.name.label("project_name"), Project.enabled.label("project_enabled"),
           Assignment.role)
    .join(User, User.id == Credential.user_id)
    .join(Project, Project.id == Credential.project_id)
    .outerjoin(Assignment, (Assignment.user_id == Credential.user_id)
               & (Assignment.project_id == Credential.project_id))
    .where(Credential.id == sqlalchemy.bindparam("id")))
