"""API tokens: shown once, stored as sha256 only, refused when revoked or the agent is gone."""

import datetime as dt
import hashlib

import pytest
import sqlalchemy as sa

from ticketing.errors import Invalid
from ticketing.models import ApiToken
from ticketing.services import api_tokens
from ticketing.services.agents import create_agent, deactivate_agent

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def _stored_values(db_session) -> list[str]:
    """Every column value of every api_tokens row, as text."""
    rows = db_session.execute(sa.select(ApiToken.__table__)).all()
    return [str(value) for row in rows for value in row]


def test_the_plaintext_is_returned_once_and_only_its_sha256_is_stored(db_session, agent):
    token, plaintext = api_tokens.create_token(db_session, agent, name="ci", now=NOW)
    db_session.commit()
    assert plaintext.startswith("hof_") and len(plaintext) >= 40
    assert token.token_sha256 == hashlib.sha256(plaintext.encode()).hexdigest()
    stored = _stored_values(db_session)
    assert not any(plaintext in value or plaintext[4:] in value for value in stored)
    assert not hasattr(token, "plaintext")


def test_every_token_is_different(db_session, agent):
    tokens = {api_tokens.create_token(db_session, agent, now=NOW)[1] for _ in range(20)}
    assert len(tokens) == 20


def test_a_valid_token_authenticates_its_agent(db_session, agent):
    _, plaintext = api_tokens.create_token(db_session, agent, now=NOW)
    assert api_tokens.authenticate_token(db_session, plaintext, now=NOW) is agent


def test_unknown_and_malformed_tokens_are_refused(db_session, agent):
    _, plaintext = api_tokens.create_token(db_session, agent, now=NOW)
    for guess in (
        "",
        plaintext[:-1],
        plaintext + "x",
        plaintext[4:],  # without the prefix
        plaintext.upper(),
        "hof_" + "a" * 10_000,
        "hof_\ud800",
        hashlib.sha256(plaintext.encode()).hexdigest(),  # the stored digest itself
    ):
        assert api_tokens.authenticate_token(db_session, guess, now=NOW) is None, guess


def test_revoked_tokens_are_refused_and_revoking_twice_is_harmless(db_session, agent):
    token, plaintext = api_tokens.create_token(db_session, agent, now=NOW)
    api_tokens.revoke_token(db_session, token.id, now=NOW)
    later = NOW + dt.timedelta(hours=1)
    assert api_tokens.revoke_token(db_session, token.id, now=later).revoked_at == NOW
    assert api_tokens.authenticate_token(db_session, plaintext, now=later) is None


def test_a_deactivated_agents_tokens_are_refused(db_session, agent):
    _, plaintext = api_tokens.create_token(db_session, agent, now=NOW)
    deactivate_agent(db_session, agent)
    assert api_tokens.authenticate_token(db_session, plaintext, now=NOW) is None


def test_no_token_is_issued_to_a_deactivated_agent(db_session, agent):
    deactivate_agent(db_session, agent)
    with pytest.raises(Invalid, match="deactivated"):
        api_tokens.create_token(db_session, agent, now=NOW)


def test_last_used_is_recorded_at_most_once_a_minute(db_session, agent):
    token, plaintext = api_tokens.create_token(db_session, agent, now=NOW)
    assert token.last_used_at is None
    api_tokens.authenticate_token(db_session, plaintext, now=NOW)
    assert token.last_used_at == NOW
    api_tokens.authenticate_token(db_session, plaintext, now=NOW + dt.timedelta(seconds=59))
    assert token.last_used_at == NOW
    api_tokens.authenticate_token(db_session, plaintext, now=NOW + dt.timedelta(seconds=61))
    assert token.last_used_at == NOW + dt.timedelta(seconds=61)


def test_revoke_agent_tokens_ends_every_live_token(db_session, agent):
    other = create_agent(db_session, email="lee@example.com", name="Lee", password="x" * 12)
    _, mine = api_tokens.create_token(db_session, agent, now=NOW)
    _, theirs = api_tokens.create_token(db_session, other, now=NOW)
    assert api_tokens.revoke_agent_tokens(db_session, agent, now=NOW) == 1
    assert api_tokens.authenticate_token(db_session, mine, now=NOW) is None
    assert api_tokens.authenticate_token(db_session, theirs, now=NOW) is other


def test_token_names_are_one_bounded_line(db_session, agent):
    token, _ = api_tokens.create_token(db_session, agent, name=" ci\r\nbot\x00 ", now=NOW)
    assert token.name == "ci bot"
    with pytest.raises(Invalid, match="at most 100"):
        api_tokens.create_token(db_session, agent, name="x" * 101, now=NOW)
