"""Token verification as other services do it: locally, with a bounded revocation delay."""

from __future__ import annotations

import time

import pytest
import sqlalchemy

from soko.common.auth import AuthContext
from soko.common.errors import ServiceUnavailable, Unauthorized
from soko.identity.tokens import FernetTokenValidator, RevocationList, TokenPayload
from tests.identity.conftest import password_of


def issue(manager, user="alice"):
    return manager.authenticate(user_name=user, password=password_of(user))


def test_payload_round_trip(manager):
    issued = issue(manager)
    payload = manager.codec.decode(issued.token)
    assert payload == issued.payload
    assert payload.roles == ("member", "reader")  # member implies reader
    assert payload.expires_at - payload.issued_at == 3600


def test_validator_from_config_verifies_without_the_identity_app(config, manager):
    issued = issue(manager)
    validator = FernetTokenValidator.from_config(config)
    ctx = validator.validate(issued.token)
    assert isinstance(ctx, AuthContext)
    assert (ctx.user_name, ctx.project_name) == ("alice", "alpha")
    assert ctx.has_role("member") and not ctx.has_role("admin")


def test_expired_token_is_refused(config, manager, clock):
    issued = issue(manager)
    validator = FernetTokenValidator.from_config(config, clock=clock)
    clock.advance(3599)
    validator.validate(issued.token)
    clock.advance(2)
    with pytest.raises(Unauthorized, match="expired"):
        validator.validate(issued.token)


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-5] + ("A" if t[-5] != "A" else "B") + t[-4:],  # one flipped character
    lambda t: t[:40],  # truncated
    lambda t: "garbage",
    lambda t: t + "é",
])
def test_tampered_token_is_refused(config, manager, mangle):
    token = issue(manager).token
    with pytest.raises(Unauthorized, match="not valid"):
        FernetTokenValidator.from_config(config).validate(mangle(token))


def test_token_signed_with_another_repository_is_refused(config, manager, data_dir, tmp_path):
    from tests.identity.conftest import identity_config

    other = identity_config(tmp_path / "elsewhere")
    from soko.identity.manager import IdentityManager

    foreign = IdentityManager.from_config(other)
    foreign.create_project("alpha")
    foreign.create_user("alice", password_of("alice"), default_project="alpha")
    foreign.grant_role("alpha", "alice", "admin")
    forged = issue(foreign).token
    with pytest.raises(Unauthorized, match="not valid"):
        FernetTokenValidator.from_config(config).validate(forged)


def test_revocation_reaches_another_process_within_the_refresh_bound(config, manager):
    """A second validator with its own engine stands in for another service's process."""
    issued = issue(manager)
    elsewhere = FernetTokenValidator.from_config(config)  # refresh 0.2 s in these tests
    elsewhere.validate(issued.token)
    manager.revoke_token(issued.payload)
    with pytest.raises(Unauthorized, match="revoked"):
        manager.validator.validate(issued.token)  # the revoking process: at once
    deadline = time.monotonic() + 0.2 + 1.0
    while time.monotonic() < deadline:
        try:
            elsewhere.validate(issued.token)
        except Unauthorized as exc:
            assert "revoked" in exc.message
            break
        time.sleep(0.02)
    else:
        pytest.fail("the other validator still accepted a revoked token after its bound")


def test_password_change_revokes_older_tokens_only(config, manager, clock):
    old = issue(manager)
    clock.advance(1)
    user_id = old.payload.user_id
    manager.update_user(user_id, password="a-new-password")
    with pytest.raises(Unauthorized, match="revoked"):
        manager.validator.validate(old.token)
    clock.advance(1)
    new = manager.authenticate(user_name="alice", password="a-new-password")
    assert manager.validator.validate(new.token).user_id == user_id


def test_removing_a_role_revokes_tokens_on_that_project_only(manager, clock):
    manager.create_project("gamma")
    manager.grant_role("gamma", "alice", "member")
    on_alpha = issue(manager)
    on_gamma = manager.authenticate(user_name="alice", password=password_of("alice"),
                                    project_name="gamma")
    clock.advance(1)
    manager.revoke_role("gamma", "alice", "member")
    with pytest.raises(Unauthorized, match="revoked"):
        manager.validator.validate(on_gamma.token)
    assert manager.validator.validate(on_alpha.token).project_name == "alpha"


def test_disabling_a_project_revokes_its_tokens(manager):
    issued = issue(manager)
    manager.update_project(issued.payload.project_id, enabled=False)
    with pytest.raises(Unauthorized, match="revoked"):
        manager.validator.validate(issued.token)
    with pytest.raises(Unauthorized, match="disabled"):
        issue(manager)


def test_unreadable_revocation_list_fails_closed_after_max_staleness(manager):
    issued = issue(manager)
    broken = sqlalchemy.create_engine("sqlite:////nonexistent/dir/identity.db")
    revocations = RevocationList(broken, refresh=0.01, max_staleness=0.01)
    validator = FernetTokenValidator(manager.codec, revocations)
    with pytest.raises(ServiceUnavailable, match="revocations cannot be checked"):
        validator.validate(issued.token)


def test_undecodable_payload_is_refused(manager):
    token = manager.codec.keys.fernet().encrypt(b"\x93\x01\x02\x03").decode()
    with pytest.raises(Unauthorized, match="payload"):
        manager.validator.validate(token)


def test_payload_is_compact():
    payload = TokenPayload("ab" * 16, "u" * 32, "alice", "p" * 32, "alpha",
                           ("member", "reader"), 1.0, 2.0)
    assert len(payload.pack()) < 150
