"""Fixtures for the end-to-end email stories."""

import pytest

from tests.support.flows import add_support_mailbox
from ticketing.models import Mailbox


@pytest.fixture
def mailbox(app, db_session, imap_mailbox) -> Mailbox:
    """The support mailbox, configured in Handoff against a clean Dovecot INBOX."""
    return add_support_mailbox(app, db_session, imap_mailbox)
