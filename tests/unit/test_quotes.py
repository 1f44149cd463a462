"""Unit tests for `mail.quotes.split_reply`: reversible reply stripping."""

from __future__ import annotations

from collections import Counter

import pytest

from mail.quotes import ReplySplit, split_reply


def _chars(text: str) -> Counter[str]:
    return Counter(ch for ch in text if not ch.isspace())


def assert_reversible(text: str, split: ReplySplit) -> None:
    """Nothing deleted, nothing added: visible + trimmed hold every non-blank character."""
    assert _chars(split.visible + split.trimmed) == _chars(text)
    for line in text.splitlines():
        if line.strip():
            assert line.strip() in split.visible or line.strip() in split.trimmed


GMAIL = """\
Thanks, that fixed it.

On Mon, Jan 1, 2024 at 10:00 AM Support Team <support@handoff.example> wrote:

> Please restart the printer.
>
> Regards, Support
"""

GMAIL_WRAPPED = """\
Thanks, that fixed it.

On Mon, Jan 1, 2024 at 10:00 AM Some Very Long Support Team Name <
support@handoff.example> wrote:

> Please restart the printer.
"""

OUTLOOK = """\
Still broken, see attached.

________________________________
From: Support Team <support@handoff.example>
Sent: Monday, January 1, 2024 10:00 AM
To: Alice <alice@customer.example>
Subject: RE: [#42] Printer

Please restart the printer.
"""

OUTLOOK_ORIGINAL = """\
Still broken.

-----Original Message-----
From: Support Team [mailto:support@handoff.example]
Sent: Monday, January 1, 2024 10:00 AM
Subject: [#42] Printer

Please restart the printer.
"""

GERMAN = """\
Vielen Dank, jetzt geht es wieder.

Am 01.01.2024 um 10:00 schrieb Support Team <support@handoff.example>:
> Bitte starten Sie den Drucker neu.
"""

GERMAN_OUTLOOK = """\
Leider nicht.

Von: Support Team <support@handoff.example>
Gesendet: Montag, 1. Januar 2024 10:00
An: Alice <alice@customer.example>
Betreff: AW: Drucker

Bitte starten Sie den Drucker neu.
"""


@pytest.mark.parametrize(
    ("text", "visible", "history"),
    [
        pytest.param(GMAIL, "Thanks, that fixed it.", "Please restart the printer.", id="gmail"),
        pytest.param(GMAIL_WRAPPED, "Thanks, that fixed it.", "Please restart", id="gmail-wrapped"),
        pytest.param(OUTLOOK, "Still broken, see attached.", "From: Support Team", id="outlook"),
        pytest.param(
            OUTLOOK_ORIGINAL, "Still broken.", "-----Original Message-----", id="outlook-original"
        ),
        pytest.param(GERMAN, "Vielen Dank, jetzt geht es wieder.", "schrieb", id="german"),
        pytest.param(GERMAN_OUTLOOK, "Leider nicht.", "Gesendet:", id="german-outlook"),
        pytest.param(
            "Merci !\n\nLe lun. 1 janv. 2024 à 10:00, Support <support@handoff.example> a écrit :"
            "\n> Bonjour\n",
            "Merci !",
            "a écrit",
            id="french",
        ),
        pytest.param(
            "Gracias\n\nEl lun, 1 ene 2024 a las 10:00, Support (<support@handoff.example>) "
            "escribió:\n> Hola\n",
            "Gracias",
            "escribió",
            id="spanish",
        ),
        pytest.param(
            "Bedankt\n\nOp 1 jan. 2024 om 10:00 schreef Support <support@handoff.example>:"
            "\n> Hallo\n",
            "Bedankt",
            "schreef",
            id="dutch",
        ),
        pytest.param(
            "Hello\n\nOn 1 Jan 2024, at 10:00, Support Team <support@handoff.example> wrote:"
            "\n\n> Hi\n",
            "Hello",
            "> Hi",
            id="apple-mail",
        ),
        pytest.param(
            "Hello\n\nOn 01/01/2024 10:00, Support Team wrote:\n> Hi\n",
            "Hello",
            "> Hi",
            id="thunderbird",
        ),
    ],
)
def test_quoted_history_is_trimmed(text: str, visible: str, history: str) -> None:
    split = split_reply(text)
    assert split.visible == visible
    assert history in split.trimmed
    assert split.has_trimmed
    assert_reversible(text, split)


def test_interleaved_answers_stay_visible() -> None:
    text = """\
On Mon, Jan 1, 2024 at 10:00 AM Support <support@handoff.example> wrote:
> Which printer model do you have?

The LaserJet 4000.

> And which operating system?

Windows 11.
"""
    split = split_reply(text)
    assert "The LaserJet 4000." in split.visible
    assert "Windows 11." in split.visible
    assert "> Which printer model do you have?" in split.visible  # the answers need the questions
    assert_reversible(text, split)


def test_reply_below_the_quote_stays_visible() -> None:
    text = (
        "On Mon, Jan 1, 2024, Support <support@handoff.example> wrote:\n"
        "> Any news?\n> Bye\n\nYes, fixed.\n"
    )
    split = split_reply(text)
    assert split.visible == "Yes, fixed."
    assert "> Any news?" in split.trimmed


def test_no_quote_means_everything_visible() -> None:
    text = "Hello,\n\nmy printer is on fire.\nPlease help!\n"
    split = split_reply(text)
    assert split.visible == text.strip("\n")
    assert split.trimmed == ""
    assert not split.has_trimmed


@pytest.mark.parametrize(
    "tagline", ["Sent from my iPhone", "Von meinem iPhone gesendet", "Get Outlook for iOS"]
)
def test_mobile_signatures_are_trimmed(tagline: str) -> None:
    text = f"Fixed, thanks.\n\n{tagline}\n"
    split = split_reply(text)
    assert split.visible == "Fixed, thanks."
    assert split.trimmed == tagline
    assert_reversible(text, split)


def test_dash_dash_signature_is_trimmed_but_valediction_stays() -> None:
    text = "It works now.\n\nThanks,\nAlice\n\n-- \nAlice Example\nACME Corp, +1 555 0100\n"
    split = split_reply(text)
    assert split.visible == "It works now.\n\nThanks,\nAlice"
    assert split.trimmed.startswith("-- \nAlice Example")
    assert_reversible(text, split)


def test_forwarded_message_is_content_not_history() -> None:
    text = (
        "FYI, see below.\n\n---------- Forwarded message ---------\n"
        "From: Bob <bob@x.example>\nDate: Mon, Jan 1, 2024\nSubject: Invoice\n\nPlease pay.\n"
    )
    split = split_reply(text)
    assert "Please pay." in split.visible
    assert not split.has_trimmed


def test_html_blockquote_is_trimmed_when_the_text_has_no_markers() -> None:
    html = (
        "<div>Sounds good.</div><blockquote type='cite'><div>Shall we meet?</div></blockquote>"
        "<div>Disclaimer</div>"
    )
    split = split_reply("Sounds good.\nShall we meet?\nDisclaimer", html=html)
    assert split.visible.split() == ["Sounds", "good.", "Disclaimer"]
    assert "Shall we meet?" in split.trimmed


@pytest.mark.parametrize(
    "text", ["", "\n\n", "> only a quote\n> nothing else\n> at all\n", "-- \n"]
)
def test_degenerate_input_never_hides_everything(text: str) -> None:
    split = split_reply(text)
    assert _chars(split.visible + split.trimmed) == _chars(text)
    if text.strip():
        assert split.visible.strip()
