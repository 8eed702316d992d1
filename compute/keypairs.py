"""Key pairs (Nova's ``os-keypairs``) and what a server is booted with for its guest: the
key pair's public key and the user data, both served to the guest by the metadata API.

Key pairs belong to a user, not a project, as in Nova. A key pair is created from a given
OpenSSH public key, or generated here: then the private key is in the answer to the create
and nowhere else (never stored). The fingerprint is Nova's: the MD5 of the key's decoded
blob as colon-separated hex, what ``ssh-keygen -l -E md5`` prints.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

import falcon
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from soko.common.db import session_scope
from soko.common.errors import BadRequest, Conflict, Forbidden, NotFound
from soko.compute.models import NAME_MAX, KeyPair

# Nova's keypair name rule (microversion 2.92): letters, digits, space and "_.@-".
NAME = re.compile(r"^[A-Za-z0-9 _.@-]+$")
MAX_KEYPAIRS = 100  # per user: Nova's default key_pairs quota
MAX_USER_DATA = 65535  # bytes of base64: Nova's limit on user_data


def fingerprint(public_key: str) -> str:
    blob = base64.b64decode(public_key.split()[1])
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def checked_public_key(value) -> str:
    """An OpenSSH public key line (``type base64 [comment]``) that parses as a key."""
    if not isinstance(value, str) or "\x00" in value or len(value) > 16384:
        raise BadRequest("Keypair data is invalid: public_key must be an OpenSSH public key")
    key = value.strip()
    try:
        serialization.load_ssh_public_key(key.encode())
    except (ValueError, TypeError, binascii.Error, IndexError):
        raise BadRequest("Keypair data is invalid: failed to generate fingerprint") from None
    return key


def generated_key(name: str) -> tuple[str, str]:
    """(public, private) of a new 2048-bit RSA key, as Nova generated them."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return f"{public} Generated-by-soko ({name})", private


def checked_name(value) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= NAME_MAX:
        raise BadRequest(f"Keypair name must be string and between 1 and {NAME_MAX} "
                         "characters long")
    if not NAME.match(value) or value.strip() != value:
        raise BadRequest("Keypair name contains unsafe characters (letters, digits, spaces "
                         "inside, '_', '.', '@' and '-' only)")
    return value


def checked_user_data(value) -> str | None:
    """Nova's ``user_data``: base64 text of at most 65535 bytes; stored as given."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest("user_data must be a base64 string")
    if len(value) > MAX_USER_DATA:
        raise BadRequest(f"User data too large. User data must be no larger than "
                         f"{MAX_USER_DATA} bytes once base64 encoded. Your data is "
                         f"{len(value)} bytes")
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        raise BadRequest("user_data is not valid base64") from None
    return value


class KeyPairs:
    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    def create(self, user_id: str, name, public_key=None,
               key_type="ssh") -> tuple[KeyPair, str | None]:
        """The key pair, and the private key when it was generated here."""
        name = checked_name(name)
        if key_type != "ssh":
            raise BadRequest(f"Invalid keypair type {key_type!r}: only 'ssh' is supported")
        private = None
        if public_key is None:
            public_key, private = generated_key(name)
        else:
            public_key = checked_public_key(public_key)
        row = KeyPair(user_id=user_id, name=name, type=key_type, public_key=public_key,
                      fingerprint=fingerprint(public_key))
        try:
            with session_scope(self.sessions) as s:
                held = s.scalar(select(func.count()).select_from(KeyPair)
                                .where(KeyPair.user_id == user_id))
                if held >= MAX_KEYPAIRS:
                    raise Forbidden("Quota exceeded, too many key pairs.")
                s.add(row)
        except IntegrityError:
            raise Conflict(f"Key pair '{name}' already exists.") from None
        return row, private

    def list(self, user_id: str) -> list[KeyPair]:
        with session_scope(self.sessions) as s:
            return list(s.scalars(select(KeyPair).where(KeyPair.user_id == user_id)
                                  .order_by(KeyPair.name)))

    def get(self, user_id: str, name: str) -> KeyPair:
        with session_scope(self.sessions) as s:
            found = s.scalar(select(KeyPair).where(KeyPair.user_id == user_id,
                                                   KeyPair.name == name))
        if found is None:
            raise NotFound(f"Keypair {name} not found for user {user_id}")
        return found

    def delete(self, user_id: str, name: str) -> None:
        with session_scope(self.sessions) as s:
            gone = s.execute(delete(KeyPair).where(KeyPair.user_id == user_id,
                                                   KeyPair.name == name)).rowcount
        if gone != 1:
            raise NotFound(f"Keypair {name} not found for user {user_id}")

    def guest_data(self, user_id: str, spec: dict) -> dict:
        """The instance columns a server create's ``key_name`` and ``user_data`` give."""
        key_name = spec.get("key_name")
        found = None
        if key_name is not None:
            if not isinstance(key_name, str):
                raise BadRequest("key_name must be a string")
            try:
                found = self.get(user_id, key_name)
            except NotFound:
                raise BadRequest("Invalid key_name provided.") from None
        return {"key_name": key_name, "key_data": found.public_key if found else None,
                "user_data": checked_user_data(spec.get("user_data"))}


def keypair_view(row: KeyPair, *, detail: bool = False, private: str | None = None) -> dict:
    view = {"name": row.name, "public_key": row.public_key, "fingerprint": row.fingerprint,
            "type": row.type}
    if detail:
        view.update(id=row.id, user_id=row.user_id, deleted=False, deleted_at=None,
                    updated_at=None, created_at=row.created_at.isoformat())
    if private is not None:
        view.update(private_key=private, user_id=row.user_id)
    return view


class KeyPairCollection:
    """``/v2.1/os-keypairs``: list (each wrapped as Nova does) and create."""

    def __init__(self, keypairs: KeyPairs):
        self.keypairs = keypairs

    def on_get(self, req, resp) -> None:
        rows = self.keypairs.list(req.context.auth.user_id)
        resp.media = {"keypairs": [{"keypair": keypair_view(r)} for r in rows]}

    def on_post(self, req, resp) -> None:
        body = req.get_media(default_when_empty=None)
        spec = body.get("keypair") if isinstance(body, dict) else None
        if not isinstance(spec, dict) or set(spec) - {"name", "public_key", "type"}:
            raise BadRequest('the body must be {"keypair": {"name": ..., "public_key": ..., '
                             '"type": "ssh"}} (public_key optional: one is generated)')
        row, private = self.keypairs.create(req.context.auth.user_id, spec.get("name"),
                                            spec.get("public_key"), spec.get("type", "ssh"))
        resp.status = falcon.HTTP_201
        resp.media = {"keypair": keypair_view(row, private=private) | {
            "user_id": row.user_id}}


class KeyPairItem:
    def __init__(self, keypairs: KeyPairs):
        self.keypairs = keypairs

    def on_get(self, req, resp, name: str) -> None:
        row = self.keypairs.get(req.context.auth.user_id, name)
        resp.media = {"keypair": keypair_view(row, detail=True)}

    def on_delete(self, req, resp, name: str) -> None:
        self.keypairs.delete(req.context.auth.user_id, name)
        resp.status = falcon.HTTP_204


def add_routes(app: falcon.App, prefix: str, keypairs: KeyPairs) -> None:
    app.add_route(f"{prefix}/os-keypairs", KeyPairCollection(keypairs))
    app.add_route(f"{prefix}/os-keypairs/{{name}}", KeyPairItem(keypairs))
