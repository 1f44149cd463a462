"""Card numbers are recognised (Luhn, 13-19 digits, spaces or dashes) and refused by name."""

import pytest

from ticketing.cards import PanRejected, contains_pan, luhn_ok, reject_pan


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424242",
        "4242 4242 4242 4242",
        "4242-4242-4242-4242",
        "card: 5555555555554444 thanks",
        "378282246310005",  # Amex, 15 digits
        "4222222222222",  # 13 digits
        "6011111111111117",
    ],
)
def test_card_numbers_are_detected(text):
    assert contains_pan(text)


@pytest.mark.parametrize(
    "text",
    [
        "4242",
        "4242424242424241",  # fails Luhn
        "cus_4242424242424242x",  # still digits... but see below
        "2027",
        "order 12345678",
        "12345678901234567890123",  # longer than any PAN
        "acct_1234",
    ],
)
def test_other_numbers_are_not(text):
    if text.startswith("cus_"):
        # A PAN glued to letters is still a PAN: the digits are what leak.
        assert contains_pan(text)
    else:
        assert not contains_pan(text)


def test_luhn():
    assert luhn_ok("79927398713")
    assert not luhn_ok("79927398710")


def test_reject_names_the_field_and_never_repeats_the_number():
    with pytest.raises(PanRejected) as info:
        reject_pan({"external_id": "a1", "card_last4": "4242 4242 4242 4242"})
    message = str(info.value)
    assert "card_last4" in message
    assert "4242 4242" not in message and "42424242" not in message


def test_reject_looks_inside_nested_json_and_integers():
    with pytest.raises(PanRejected):
        reject_pan({"data": {"object": {"number": 4242424242424242}}})
    reject_pan({"exp_year": 2027, "ok": True, "none": None})
