"""Notice rules on a fixed clock, the self-service link, and unsubscribe tokens."""

import datetime as dt

import pytest

from mail.notices import NoticeContext, customer_from_unsubscribe_token, fix_url, unsubscribe_token
from ticketing.models import Account, NoticeRule
from ticketing.models.accounts import expiry_date
from ticketing.services.notices import NoticeSettings, card_key, expiry_rule

TODAY = dt.date(2026, 11, 10)


@pytest.mark.parametrize(
    ("expires_on", "rule"),
    [
        (dt.date(2026, 12, 10), NoticeRule.EXPIRES_SOON),  # 30 days
        (dt.date(2026, 11, 18), NoticeRule.EXPIRES_SOON),  # 8 days
        (dt.date(2026, 11, 17), NoticeRule.EXPIRES_VERY_SOON),  # 7 days
        (dt.date(2026, 11, 10), NoticeRule.EXPIRES_VERY_SOON),  # today is still usable
        (dt.date(2026, 11, 9), NoticeRule.EXPIRED),
    ],
)
def test_the_most_urgent_rule_applies(expires_on, rule):
    assert expiry_rule(expires_on, today=TODAY, settings=NoticeSettings()) == rule


def test_cards_expire_at_the_end_of_their_month():
    assert expiry_date(2, 2028) == dt.date(2028, 2, 29)
    assert expiry_date(12, 2026) == dt.date(2026, 12, 31)


def test_a_new_expiry_month_is_a_new_notice():
    assert card_key(NoticeRule.EXPIRED, 1, 2, 2026, 3) == "expired:1:2:2026-03"
    assert card_key(NoticeRule.EXPIRED, 1, 2, 2026, 3) != card_key(
        NoticeRule.EXPIRED, 1, 2, 2030, 3
    )


def _ctx(url):
    return NoticeContext(outbound=None, account_url=url)  # type: ignore[arg-type]


def test_fix_url_placeholder_or_query_parameter():
    account = Account(external_id="cus 1/a")
    assert fix_url(account, ctx=_ctx("https://b.example/{account_id}/card")) == (
        "https://b.example/cus%201%2Fa/card"
    )
    assert fix_url(account, ctx=_ctx("https://b.example/card")) == (
        "https://b.example/card?account=cus%201%2Fa"
    )
    assert fix_url(account, ctx=_ctx("https://b.example/card?x=1")).endswith("&account=cus%201%2Fa")
    assert fix_url(account, ctx=_ctx("")) == ""


def test_unsubscribe_tokens_verify_per_customer():
    token = unsubscribe_token(42, secret_key="k" * 40)
    assert customer_from_unsubscribe_token(token, secret_key="k" * 40) == 42
    assert customer_from_unsubscribe_token(token, secret_key="other" * 10) is None
    forged = "43." + token.split(".")[1]
    assert customer_from_unsubscribe_token(forged, secret_key="k" * 40) is None
    assert customer_from_unsubscribe_token("garbage", secret_key="k" * 40) is None
