"""Identity logic: projects, users, role assignments, logins and token revocation. No HTTP.

Every change that takes rights away (password change, user or project disabled or deleted,
a role removed) records a revocation, so tokens issued before it stop working within the
validators' refresh bound (in identity itself at once), not at their expiry.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable

import sqlalchemy
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from soko.common.config import Config
from soko.common.db import make_engine, make_sessionmaker, session_scope
from soko.common.errors import BadRequest, Conflict, NotFound, Unauthorized
from soko.identity import passwords
from soko.identity.keys import FernetKeyRepository
from soko.identity.models import (
    NAME_MAX,
    Assignment,
    LoginFailure,
    Project,
    Revocation,
    User,
    create_schema,
)
from soko.identity.roles import IMPLIED_ROLES, ROLES
from soko.identity.service import (
    IdentityConfig,
    db_url,
    identity_dir,
    identity_section,
    key_dir,
)
from soko.identity.tokens import (
    FernetTokenValidator,
    ImmediateRevocationList,
    IssuedToken,
    RevocationList,
    TokenCodec,
    TokenPayload,
    new_payload,
)

log = logging.getLogger("soko.identity")

NAME_PATTERN = re.compile(r"^[^\x00-\x1f\x7f:/]+$")
MIN_PASSWORD_LENGTH = 8
BAD_CREDENTIALS = "The user name or password is wrong (or the user is disabled)."
UNCHANGED = object()  # an update_user() argument that was not given


def check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(f"A {kind} needs a non-empty name.")
    if len(name) > NAME_MAX or name != name.strip() or not NAME_PATTERN.match(name):
        raise BadRequest(
            f"The {kind} name must be 1-{NAME_MAX} characters without leading or trailing "
            "spaces, control characters, ':' or '/'."
        )
    return name


def check_password(password: object) -> str:
    if not isinstance(password, str):
        raise BadRequest("The password must be a string.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadRequest(f"The password must be at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password.encode()) > passwords.MAX_PASSWORD_BYTES:
        raise BadRequest(f"The password must be at most {passwords.MAX_PASSWORD_BYTES} bytes.")
    return password


def check_role(role: object) -> str:
    if role not in ROLES:
        raise NotFound(f"No role {role!s:.40}; the roles are {', '.join(ROLES)}.")
    return role


def project_record(p: Project) -> dict:
    return {"id": p.id, "name": p.name, "description": p.description, "enabled": p.enabled,
            "domain_id": "default", "parent_id": "default", "is_domain": False}


def user_record(u: User) -> dict:
    return {"id": u.id, "name": u.name, "domain_id": "default", "enabled": u.enabled,
            "default_project_id": u.default_project_id, "email": u.email,
            "password_expires_at": None}


class IdentityManager:
    def __init__(self, sessions: sessionmaker[Session], codec: TokenCodec,
                 revocations: RevocationList, settings: IdentityConfig,
                 clock: Callable[[], float] = time.time):
        self.sessions = sessions
        self.codec = codec
        self.revocations = revocations
        self.settings = settings
        self.clock = clock
        self.validator = FernetTokenValidator(codec, revocations, clock)

    @classmethod
    def from_config(cls, config: Config, *, clock: Callable[[], float] = time.time,
                    engine: sqlalchemy.Engine | None = None) -> IdentityManager:
        """Opens (creating if needed) the database and the key repository."""
        settings = identity_section(config)
        private = identity_dir(config)  # password hashes and keys: owner only
        private.mkdir(parents=True, exist_ok=True)
        os.chmod(private, 0o700)
        engine = engine or make_engine(db_url(config))
        create_schema(engine)
        keys = FernetKeyRepository(key_dir(config), max_active=settings.max_active_keys,
                                   reload_interval=settings.revocation_refresh)
        keys.initialize()
        revocations = ImmediateRevocationList(
            engine, refresh=settings.revocation_refresh,
            max_staleness=settings.revocation_max_staleness, clock=clock)
        return cls(make_sessionmaker(engine), TokenCodec(keys), revocations, settings, clock)

    def session(self):
        return session_scope(self.sessions)

    # -- projects ---------------------------------------------------------------------

    def create_project(self, name: str, description: str = "", enabled: bool = True) -> dict:
        check_name("project", name)
        project = Project(name=name, description=str(description or ""), enabled=bool(enabled),
                          created_at=self.clock())
        try:
            with self.session() as s:
                s.add(project)
        except IntegrityError:
            raise Conflict(f"A project named {name!r} exists already.") from None
        log.info("created project %s (%s)", project.id, name)
        return project_record(project)

    def list_projects(self, name: str | None = None) -> list[dict]:
        with self.session() as s:
            query = select(Project).order_by(Project.name)
            if name is not None:
                query = query.where(Project.name == name)
            return [project_record(p) for p in s.scalars(query)]

    def get_project(self, ref: str) -> dict:
        with self.session() as s:
            return project_record(self._project(s, ref))

    def update_project(self, project_id: str, *, name: str | None = None,
                       description: str | None = None, enabled: bool | None = None) -> dict:
        try:
            with self.session() as s:
                project = self._project(s, project_id, by_name=False)
                was_enabled = project.enabled
                if name is not None:
                    project.name = check_name("project", name)
                if description is not None:
                    project.description = str(description)
                if enabled is not None:
                    project.enabled = bool(enabled)
                if was_enabled and not project.enabled:
                    revoked_at = self._revoke(s, project_id=project.id)
                else:
                    revoked_at = None
        except IntegrityError:
            raise Conflict(f"A project named {name!r} exists already.") from None
        if revoked_at is not None:
            self.revocations.note(project_id=project.id, revoked_at=revoked_at)
        return project_record(project)

    def delete_project(self, project_id: str) -> None:
        with self.session() as s:
            project = self._project(s, project_id, by_name=False)
            s.execute(delete(Assignment).where(Assignment.project_id == project.id))
            s.execute(update(User).where(User.default_project_id == project.id)
                      .values(default_project_id=None))
            s.delete(project)
            revoked_at = self._revoke(s, project_id=project.id)
        self.revocations.note(project_id=project.id, revoked_at=revoked_at)
        log.info("deleted project %s (%s)", project.id, project.name)

    # -- users ------------------------------------------------------------------------

    def create_user(self, name: str, password: str, *, default_project: str | None = None,
                    email: str = "", enabled: bool = True) -> dict:
        check_name("user", name)
        check_password(password)
        digest = passwords.hash_password(password, self.settings.scrypt_log2_n)
        try:
            with self.session() as s:
                project_id = self._project(s, default_project).id if default_project else None
                now = self.clock()
                user = User(name=name, password_hash=digest, default_project_id=project_id,
                            email=str(email or ""), enabled=bool(enabled), created_at=now,
                            password_changed_at=now)
                s.add(user)
        except IntegrityError:
            raise Conflict(f"A user named {name!r} exists already.") from None
        log.info("created user %s (%s)", user.id, name)
        return user_record(user)

    def list_users(self, name: str | None = None) -> list[dict]:
        with self.session() as s:
            query = select(User).order_by(User.name)
            if name is not None:
                query = query.where(User.name == name)
            return [user_record(u) for u in s.scalars(query)]

    def get_user(self, ref: str) -> dict:
        with self.session() as s:
            return user_record(self._user(s, ref))

    def update_user(self, user_id: str, *, name: str | None = None,
                    password: str | None = None, enabled: bool | None = None,
                    email: str | None = None,
                    default_project: object = UNCHANGED) -> dict:
        """Changes a user; a new password or disabling revokes the user's tokens."""
        if password is not None:
            check_password(password)
            digest = passwords.hash_password(password, self.settings.scrypt_log2_n)
        revoked_at = None
        try:
            with self.session() as s:
                user = self._user(s, user_id, by_name=False)
                was_enabled = user.enabled
                if name is not None:
                    user.name = check_name("user", name)
                if email is not None:
                    user.email = str(email)
                if default_project is not UNCHANGED:
                    user.default_project_id = (
                        self._project(s, default_project).id if default_project else None
                    )
                if enabled is not None:
                    user.enabled = bool(enabled)
                if password is not None:
                    user.password_hash = digest
                    user.password_changed_at = self.clock()
                if password is not None or (was_enabled and not user.enabled):
                    revoked_at = self._revoke(s, user_id=user.id)
        except IntegrityError:
            raise Conflict(f"A user named {name!r} exists already.") from None
        if revoked_at is not None:
            self.revocations.note(user_id=user.id, revoked_at=revoked_at)
        return user_record(user)

    def password_is(self, user: str, password: str) -> bool:
        """Whether ``password`` is the user's, without counting a failed login (``soko up``
        checks a service user's configured password)."""
        with self.session() as s:
            stored = self._user(s, user).password_hash
        return passwords.verify_password(password, stored)

    def change_password(self, user_id: str, original: str, new: str) -> None:
        """Self-service change: needs the current password (and counts toward lockout)."""
        with self.session() as s:
            user = self._user(s, user_id, by_name=False)
            name = user.name
        self._check_credentials(name, None, original)
        self.update_user(user_id, password=new)

    def delete_user(self, user_id: str) -> None:
        with self.session() as s:
            user = self._user(s, user_id, by_name=False)
            s.execute(delete(Assignment).where(Assignment.user_id == user.id))
            s.delete(user)
            revoked_at = self._revoke(s, user_id=user.id)
        self.revocations.note(user_id=user.id, revoked_at=revoked_at)
        log.info("deleted user %s (%s)", user.id, user.name)

    # -- role assignments -------------------------------------------------------------

    def grant_role(self, project: str, user: str, role: str) -> None:
        check_role(role)
        with self.session() as s:
            p, u = self._project(s, project), self._user(s, user)
            if s.get(Assignment, (u.id, p.id, role)) is None:
                s.add(Assignment(user_id=u.id, project_id=p.id, role=role))
        log.info("granted %s on project %s to user %s", role, p.id, u.id)

    def has_role(self, project: str, user: str, role: str) -> bool:
        check_role(role)
        with self.session() as s:
            p, u = self._project(s, project), self._user(s, user)
            return s.get(Assignment, (u.id, p.id, role)) is not None

    def revoke_role(self, project: str, user: str, role: str) -> None:
        check_role(role)
        with self.session() as s:
            p, u = self._project(s, project), self._user(s, user)
            assignment = s.get(Assignment, (u.id, p.id, role))
            if assignment is None:
                raise NotFound(f"User {u.name!r} has no {role!r} role on project {p.name!r}.")
            s.delete(assignment)
            revoked_at = self._revoke(s, user_id=u.id, project_id=p.id)
        self.revocations.note(user_id=u.id, project_id=p.id, revoked_at=revoked_at)
        log.info("removed %s on project %s from user %s", role, p.id, u.id)

    def roles_of(self, project: str, user: str) -> list[str]:
        with self.session() as s:
            p, u = self._project(s, project), self._user(s, user)
            return self._assigned(s, u.id, p.id)

    def projects_of(self, user_id: str) -> list[dict]:
        with self.session() as s:
            query = (select(Project).join(Assignment, Assignment.project_id == Project.id)
                     .where(Assignment.user_id == user_id).distinct().order_by(Project.name))
            return [project_record(p) for p in s.scalars(query)]

    # -- logins and tokens ------------------------------------------------------------

    def authenticate(self, *, password: str, user_name: str | None = None,
                     user_id: str | None = None, project_name: str | None = None,
                     project_id: str | None = None) -> IssuedToken:
        """Password login scoped to a project (default: the user's default project)."""
        user = self._check_credentials(user_name, user_id, password)
        return self._issue(user, project_name, project_id, ("password",), None)

    def rescope(self, payload: TokenPayload, *, project_name: str | None = None,
                project_id: str | None = None) -> IssuedToken:
        """A new token from a valid one (Keystone's token method); never outlives it."""
        if project_name is None and project_id is None:
            project_id = payload.project_id
        with self.session() as s:
            user = s.get(User, payload.user_id)
            if user is None or not user.enabled:
                raise Unauthorized("The token's user no longer exists or is disabled.")
            s.expunge(user)
        methods = tuple(dict.fromkeys(("token", *payload.methods)))
        return self._issue(user, project_name, project_id, methods, payload.expires_at)

    def revoke_token(self, payload: TokenPayload) -> None:
        with self.session() as s:
            revoked_at = self._revoke(s, token_id=payload.token_id,
                                      prune_after=payload.expires_at + 60)
        self.revocations.note(token_id=payload.token_id, revoked_at=revoked_at)
        log.info("revoked token %s of user %s", payload.token_id, payload.user_id)

    def _issue(self, user: User, project_name, project_id, methods,
               not_after: float | None) -> IssuedToken:
        with self.session() as s:
            if project_id is None and project_name is None:
                if user.default_project_id is None:
                    raise Unauthorized(
                        "Name a project to scope the token to (this user has no default "
                        "project)."
                    )
                project_id = user.default_project_id
            if project_id is not None:
                project = s.get(Project, project_id)
            else:
                project = s.scalar(select(Project).where(Project.name == project_name))
            if project is None or not project.enabled:
                raise Unauthorized("The project does not exist or is disabled.")
            assigned = self._assigned(s, user.id, project.id)
            if not assigned:
                raise Unauthorized(f"User {user.name!r} has no role on project {project.name!r}.")
            roles = list(dict.fromkeys(r for a in assigned for r in IMPLIED_ROLES[a]))
            payload = new_payload(user_id=user.id, user_name=user.name, project_id=project.id,
                                  project_name=project.name, roles=roles,
                                  ttl=self.settings.token_ttl, now=self.clock(),
                                  methods=methods, expires_at=not_after)
        return IssuedToken(self.codec.encode(payload), payload)

    def _check_credentials(self, user_name: str | None, user_id: str | None,
                           password: object) -> User:
        """The user, if the password is right and the login name is not locked out."""
        login = user_name if user_name is not None else user_id
        if not isinstance(login, str) or len(login) > NAME_MAX or not NAME_PATTERN.match(login):
            # No user can have this name (nor a lockout counter: NUL cannot be stored).
            raise Unauthorized("Name the user (by name or id) to log in.")
        if not isinstance(password, str) or not password:
            raise Unauthorized("A password is needed to log in.")
        with self.session() as s:
            column = User.name if user_name is not None else User.id
            user = s.scalar(select(User).where(column == login))
            if user is not None:
                s.expunge(user)
        # One counter per user whether they log in by name or id; unknown names get theirs.
        counter = user.id if user is not None else login
        self._refuse_if_locked(counter, login)
        if user is None:
            passwords.burn_verify(password, self.settings.scrypt_log2_n)
            ok = False
        else:
            ok = passwords.verify_password(password, user.password_hash) and user.enabled
        if not ok:
            self._record_failure(counter, login)
            log.info("failed login for %r", login)
            raise Unauthorized(BAD_CREDENTIALS)
        self._clear_failures(counter)
        return user

    # -- lockout ----------------------------------------------------------------------

    def _refuse_if_locked(self, counter: str, login: str) -> None:
        if not self.settings.lockout_failures:
            return
        with self.session() as s:
            row = s.get(LoginFailure, counter)
            locked_until = row.locked_until if row else 0.0
        remaining = locked_until - self.clock()
        if remaining > 0:
            wait = math.ceil(remaining)
            raise Unauthorized(
                f"Too many failed logins for {login!r}: logins for this user are refused "
                f"for another {wait} s.",
                headers={"Retry-After": str(wait)},
            )

    def _record_failure(self, counter: str, login: str) -> None:
        limit, duration = self.settings.lockout_failures, self.settings.lockout_seconds
        if not limit:
            return
        now = self.clock()
        table = LoginFailure.__table__
        for _ in range(3):
            try:
                with self.session() as s:
                    # One UPDATE first: it takes the write lock, so concurrent failures
                    # from other workers are counted, not lost.
                    result = s.execute(
                        update(table).where(table.c.name == counter).values(
                            failures=sqlalchemy.case(
                                (table.c.last_failure_at < now - duration, 1),
                                else_=table.c.failures + 1,
                            ),
                            last_failure_at=now,
                        )
                    )
                    if result.rowcount == 0:
                        s.add(LoginFailure(name=counter, failures=1, last_failure_at=now,
                                           locked_until=0.0))
                        s.flush()
                    failures = s.scalar(select(table.c.failures).where(table.c.name == counter))
                    if failures >= limit:
                        s.execute(update(table).where(table.c.name == counter)
                                  .values(failures=0, locked_until=now + duration))
                        log.warning("login name %r locked for %d s after %d failed logins",
                                    login, duration, failures)
                    s.execute(delete(table).where(table.c.last_failure_at < now - duration,
                                                  table.c.locked_until < now))
                return
            except IntegrityError:
                continue  # another worker inserted the row first; count on it

    def _clear_failures(self, counter: str) -> None:
        if not self.settings.lockout_failures:
            return
        with self.session() as s:
            s.execute(delete(LoginFailure).where(LoginFailure.name == counter))

    # -- helpers ----------------------------------------------------------------------

    def _revoke(self, s: Session, *, token_id: str | None = None, user_id: str | None = None,
                project_id: str | None = None, prune_after: float | None = None) -> float:
        now = self.clock()
        if prune_after is None:
            prune_after = now + self.settings.token_ttl + 60
        s.add(Revocation(token_id=token_id, user_id=user_id, project_id=project_id,
                         revoked_at=now, prune_after=prune_after))
        s.execute(delete(Revocation).where(Revocation.prune_after < now))
        return now

    @staticmethod
    def _assigned(s: Session, user_id: str, project_id: str) -> list[str]:
        rows = s.scalars(select(Assignment.role).where(Assignment.user_id == user_id,
                                                       Assignment.project_id == project_id))
        held = set(rows)
        return [r for r in ROLES if r in held]

    @staticmethod
    def _project(s: Session, ref: str, *, by_name: bool = True) -> Project:
        project = s.get(Project, ref) if isinstance(ref, str) and len(ref) == 32 else None
        if project is None and by_name and isinstance(ref, str):
            project = s.scalar(select(Project).where(Project.name == ref))
        if project is None:
            raise NotFound(f"No project {ref!s:.64}.")
        return project

    @staticmethod
    def _user(s: Session, ref: str, *, by_name: bool = True) -> User:
        user = s.get(User, ref) if isinstance(ref, str) and len(ref) == 32 else None
        if user is None and by_name and isinstance(ref, str):
            user = s.scalar(select(User).where(User.name == ref))
        if user is None:
            raise NotFound(f"No user {ref!s:.64}.")
        return user

