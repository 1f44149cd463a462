"""Card numbers never enter Handoff: detection of anything that looks like one (a PAN).

Every way account data comes in (CSV import, JSON API, webhooks) passes each value through
`reject_pan` before it is validated, stored or logged. A PAN here is 13-19 digits, optionally
separated by single spaces or dashes, that passes the Luhn check (ISO/IEC 7812) — the shape
PCI DSS scanners look for. The error says which field and never repeats the digits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ticketing.errors import Invalid

# A run of digits with single space/dash separators, not glued to other digits.
_CANDIDATE = re.compile(r"(?<![0-9])[0-9](?:[ \-]?[0-9]){12,18}(?![0-9])")


def luhn_ok(digits: str) -> bool:
    """Whether a string of digits passes the Luhn checksum."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def contains_pan(text: str) -> bool:
    """Whether `text` holds something that looks like a full card number."""
    if len(text) < 13:
        return False
    if _CANDIDATE.search(text) is None:
        return False
    return any(luhn_ok(re.sub(r"[ \-]", "", m.group())) for m in _CANDIDATE.finditer(text))


class PanRejected(Invalid):
    """A value looked like a full card number; nothing was stored."""


def reject_pan(values: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
    """Raise `PanRejected` naming the first field whose value looks like a card number.

    Values of any type are checked as text (a number sent as a JSON integer is still a PAN).
    """
    if isinstance(values, Mapping):
        try:
            joined = "\x00".join(values.values())
        except TypeError:
            pass  # not all text: field by field below
        else:
            if not contains_pan(joined):
                return  # the common case, one regex pass per record (NUL never joins digits)
    items = values.items() if isinstance(values, Mapping) else values
    for name, value in items:
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, Mapping):
            reject_pan(value)
            continue
        if isinstance(value, list | tuple):
            reject_pan((name, item) for item in value)
            continue
        if contains_pan(str(value)):
            raise PanRejected(
                f"{name} looks like a full card number; Handoff stores only the card brand, "
                "the last 4 digits and the expiry. Nothing was saved for this record."
            )
