"""Reversible reply stripping: what the customer just wrote vs. the history they quoted.

Place in the flow (design.md §1, §3): `parse → classify → thread → ticketing service`. When an
inbound reply is added to a ticket, the service stores the *whole* body and calls `split_reply()`
to know what to show: the new text (`visible`), with a "show trimmed content" toggle for the quoted
history and signature (`trimmed`). Nothing is ever deleted, so a wrong split costs one click, not
lost words; that is why the splitter errs on the side of keeping text visible.

How it works (after mailgun/talon's line markers): every line is tagged as empty, quoted (`>`),
a splitter (an attribution such as "On … wrote:", "Am … schrieb …:", an Outlook "From:/Sent:"
header block, "-----Original Message-----"), a forward marker, or text. The quotation starts at the
first splitter (or at a run of `>` lines) and ends at the last quoted line; text after it stays
visible ("reply below the quote"). Text *between* quoted lines is an interleaved answer: then
nothing is trimmed, because answers make no sense without the questions they answer. A message
that starts by forwarding something keeps everything visible too.

Signature policy: a `-- ` delimited block and device/app taglines ("Sent from my iPhone",
"Von meinem iPhone gesendet", "Get Outlook for iOS") at the end of the new text are signatures and
go to `trimmed`. A valediction with a name ("Thanks,\\nAlex", "Med venlig hilsen\\nAnders") is part
of what the person wrote and stays visible: agents address customers by that name, and sources
disagree on it anyway (talon keeps it, mail-parser-reply splits it off).

For HTML mail the quote containers of the big clients (Gmail's `gmail_quote`, Outlook's
`divRplyFwdMsg`, Thunderbird's `moz-cite-prefix`, Apple/Yahoo `blockquote`s) are more reliable
than text heuristics, so `split_reply(text, html=...)` uses them when the text alone finds nothing.
"""

# The attribution and header words of other languages are meant to contain Cyrillic, Turkish
# and full-width characters: RUF001 (ambiguous characters) does not apply to this module.
# ruff: noqa: RUF001

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

__all__ = ["ReplySplit", "split_reply"]


@dataclass(frozen=True, slots=True)
class ReplySplit:
    """The result of `split_reply()`.

    `visible` is the new part the customer wrote; `trimmed` the quoted history and signature
    (may be empty); `has_trimmed` is True when `trimmed` has any non-blank content. Together they
    hold every non-blank line of the input (for HTML input: of its text rendering).
    """

    visible: str
    trimmed: str
    has_trimmed: bool


# --- splitter patterns --------------------------------------------------------------------------

# Attribution verbs of "On <date>, <name> wrote:" in the languages our customers write. The
# attribution line must end with ":" (after the verb or after the name that follows it).
_WROTE = (
    r"wrote|writes|a\s+écrit|schrieb|escribió|escribio|schreef|skrev|skriver|escreveu|ha\s+scritto"
    r"|napisał(?:\(a\)|a)?|napisal\(a\)|napsal(?:\(a\)|a)?|pisze|kirjoitti|написал(?:\(а\)|а)?"
    r"|đã\s+viết|yazdı|írta|έγραψε|scrisse|a\s+scris|kirjutas|rašė|rakstīja|napísal"
    r"|geschreven"
)
# Words that open an attribution line: "On", "Le", "Am", "El", "Op", "Den", "Em", "Il", "W dniu",
# "Dnia", "Dne", "Vào", "På", "Pada", "Il giorno"...
_ATTRIBUTION_OPENERS = (
    r"on|le|am|el|op|den|em|il|w\s+dniu|dnia|dne|vào|på|pada|ve|kl\.|il\s+giorno|d[ae]n|às"
)
_ATTRIBUTION = re.compile(
    rf"""^\s*(?:
        # On … wrote:
        (?:{_ATTRIBUTION_OPENERS})\b.{{0,300}}?(?:{_WROTE}|sent)(?!\w)[^:\n]{{0,120}}:
      | (?:{_ATTRIBUTION_OPENERS})\b.{{0,300}}?[\d@].{{0,300}}?(?:{_WROTE})          # no colon
      | .{{0,300}}?(?:\d|@).{{0,300}}?(?:{_WROTE})(?!\w)[^:\n]{{0,120}}:    # <date/addr> … wrote:
      | .{{1,120}}\s(?:{_WROTE})\s+(?:on|am|le|el|op|den|em|il)\b.{{0,200}}:  # X wrote on <date>:
      | -{{2,}}\s*.{{1,300}}?\s(?:{_WROTE})\s*-{{2,}}                          # ---- X wrote ----
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)
# Attributions without a verb: "2014-10-17 11:28 GMT+03:00 Bob <bob@example.com>:" (Gmail in
# some locales), Japanese "2024年1月1日(月) 10:00 X <x@y>:".
_DATE_ADDRESS_ATTRIBUTION = re.compile(
    r"""^\s*(?:
        # starts with a date: "2011/4/7 Nathan <support@example.com>" (the colon may be missing)
        (?:\d{4}[-/.年]\s?\d{1,2}[-/.月]\s?\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})
        .{0,160}<[^\s<>@]+@[^\s<>@]+>\s*:?
        # or holds a year or a time somewhere and ends with "<address>:"
      | (?=.{0,160}(?:\b(?:19|20)\d{2}\b|\b\d{1,2}:\d{2}\b)).{0,200}<[^\s<>@]+@[^\s<>@]+>\s*:
    )\s*$""",
    re.VERBOSE,
)

# "-----Original Message-----" and its translations; also "----- Reply message -----".
_ORIGINAL_MESSAGE = re.compile(
    r"""^\s*[-_=*]{2,}\s*(?:
        original\s+message|ursprüngliche\s+nachricht|originalnachricht|message\s+d'origine
      | message\s+original|mensaje\s+original|mensagem\s+original|oorspronkelijk\s+bericht
      | origineel\s+bericht|originalmeddelande|ursprungligt\s+meddelande|oprindelig\s+meddelelse
      | opprinnelig\s+melding|messaggio\s+originale|wiadomość\s+oryginalna|původní\s+zpráva
      | исходное\s+сообщение|alkuperäinen\s+viesti|eredeti\s+üzenet|orijinal\s+mesaj
      | reply\s+message|original\s+mail
      | (?:\w+\s+){0,2}(?:message|nachricht|bericht|mensaje|messaggio|meddelelse|melding|wiadomość
          |zpráva|сообщение|viesti|üzenet|mesaj|mensagem|besked)(?:\s+\w+){0,2}
    )\s*[-_=*]{2,}\s*$""",
    re.IGNORECASE | re.VERBOSE,
)

# Forwarded messages are content the customer wants us to read, never history to hide.
_FORWARD = re.compile(
    r"""^\s*(?:
        [-=]{2,}\s*(?:forwarded\s+message|weitergeleitete\s+nachricht|message\s+transféré
          |mensaje\s+reenviado|mensagem\s+encaminhada|doorgestuurd\s+bericht|vidarebefordrat
          |videresendt\s+meddelelse|messaggio\s+inoltrato|przekazana\s+wiadomość)\s*[-=]{2,}
      | begin\s+forwarded\s+message\s*:|anfang\s+der\s+weitergeleiteten\s+nachricht\s*:
      | début\s+du\s+message\s+réexpédié\s*:|inicio\s+del\s+mensaje\s+reenviado\s*:
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)

# Outlook-style header blocks. The names are those Outlook, Gmail and Apple write in each locale.
_FROM_NAMES = (
    r"from|von|de|fra|från|van|da|od|от|lähettäjä|feladó|kimden|afzender|expéditeur|remitente"
    r"|寄件者|发件人|發件人|差出人|từ"
)
_OTHER_NAMES = (
    r"sent|date|to|subject|cc|bcc|reply-to|gesendet|datum|an|betreff|envoyé|à|objet|enviado"
    r"|fecha|para|asunto|assunto|data|sendt|til|emne|skickat|till|ämne|verzonden|verstuurd|aan"
    r"|onderwerp|inviato|oggetto|a|wysłano|wysłane|do|temat|отправлено|дата|кому|тема"
    r"|lähetetty|päivämäärä|vastaanottaja|aihe|elküldve|címzett|tárgy|odesláno|komu|předmět"
    r"|kopie|kopia|copie|копия|gönderildi|tarih|kime|konu|件名|宛先|日時|送信日時|主题|主旨|收件人"
    r"|日期|时间|時間|gửi|ngày|đến|chủ\s+đề|organization|importance|message\s+du|copie\s+à|sujet"
)
_HEADER_LINE = re.compile(
    rf"^\s*[*>\s]*\**\s*(?:(?P<from>{_FROM_NAMES})|(?:{_OTHER_NAMES}))\s*\**\s*[:：]",
    re.IGNORECASE,
)
# One-line header blocks ("From: A Sent: B To: C Subject: D"), as some clients flatten them.
_INLINE_HEADERS = re.compile(
    rf"^\s*\**(?:{_FROM_NAMES})\**\s*:.{{1,200}}?\s\**(?:sent|date|gesendet|envoyé|enviado"
    rf"|to|an|à|para)\**\s*:",
    re.IGNORECASE,
)
# Outlook's separator line above the header block (32 underscores), and dash rulers.
_RULER = re.compile(r"^\s*(?:_{10,}|-{10,}|={4,})\s*$")

# --- signatures ---------------------------------------------------------------------------------

# RFC 3676 §4.3 signature delimiter "-- " (many clients strip the trailing space).
_SIG_DELIMITER = re.compile(r"^-- ?$")
_DEVICE_TAGLINE = re.compile(
    r"""^\s*(?:
        sent\s+(?:from|via|with)\s+(?:my\s+)?\S.{0,80}
      | get\s+outlook\s+for\s+\S.{0,80}
      | (?:von|gesendet\s+von)\s+meinem\s+\S.{0,80}?(?:\s+gesendet)?
      | gesendet\s+(?:von|mit)\s+\S.{0,80}
      | envoyé\s+(?:de|depuis|à\s+partir\s+de)\s+(?:mon\s+)?\S.{0,80}
      | enviado\s+(?:desde|do|de)\s+(?:mi\s+|meu\s+|o\s+)?\S.{0,80}
      | verzonden\s+(?:vanaf|met|van)\s+(?:mijn\s+)?\S.{0,80}
      | verstuurd\s+vanaf\s+(?:mijn\s+)?\S.{0,80}
      | skickat\s+från\s+(?:min\s+)?\S.{0,80}|sendt\s+fra\s+(?:min\s+)?\S.{0,80}
      | inviato\s+da(?:l\s+mio)?\s+\S.{0,80}|wysłane\s+z\s+(?:mojego\s+)?\S.{0,80}
      | отправлено\s+(?:с|из)\s+\S.{0,80}|lähetetty\s+\S.{0,80}
    )$""",
    re.IGNORECASE | re.VERBOSE,
)
# A tagline is a tagline only when short and near the end; "sent from my iPhone app" in the
# middle of a sentence is content.
_MAX_TAGLINE_WORDS = 8
_MAX_SIGNATURE_LINES = 15


def _is_quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _strip_quote(line: str) -> str:
    return re.sub(r"^\s*(?:>\s?)+", "", line)


def _is_header_block(lines: list[str], index: int) -> bool:
    """True when an Outlook-style header block ("From: …" / "Sent: …" / …) starts at `index`.

    Two header lines within a few lines are required ("Date:" and "To:" without "From:" count,
    as some clients put Date first and wrap long From lines).
    """
    first = _HEADER_LINE.match(lines[index])
    if not first:
        return bool(_INLINE_HEADERS.match(lines[index]))
    if _INLINE_HEADERS.match(lines[index]):
        return True
    count = 1
    for line in lines[index + 1 : index + 8]:
        if not line.strip():
            continue
        match = _HEADER_LINE.match(line)
        if not match:
            # Long names or addresses wrap onto a continuation line; allow one.
            if count >= 2:
                break
            continue
        count += 1
        if count >= 2:
            return True
    return False


def _attribution_span(lines: list[str], index: int) -> int:
    """Number of lines (1-3) of an attribution starting at `index`, or 0.

    Gmail wraps long attributions ("On Mon, Jan 1, 2024 at 10:00 AM Some Body <some@body.example>
    wrote:") over two or three lines, so short joins are tried too; a join only starts here if
    its first line is a plausible start (so the reply's last line is not taken for part of it).
    """
    if not lines[index].strip():
        return 0
    for span in (1, 2, 3):
        chunk = lines[index : index + span]
        if len(chunk) < span or (span > 1 and not chunk[-1].strip()):
            break
        if _matches_attribution(chunk):
            if span > 1 and not _PLAUSIBLE_START.match(_strip_quote(chunk[0])):
                return 0  # the reply's last line ("Hello") glued to the attribution below it
            return span
    return 0


# The first line of a wrapped attribution opens with an opener word or holds a date or address.
_PLAUSIBLE_START = re.compile(rf"^\s*(?:(?:{_ATTRIBUTION_OPENERS})\b|.*[\d@])", re.IGNORECASE)


# Every alternative of the two attribution patterns is anchored at the end (`\s*$`) and ends
# in ":" ("… wrote:", "… <a@b>:"), ">" (a date-and-address line without its colon), "-"
# ("---- X wrote ----") or a verb of `_WROTE` ("On <date>, <addr> wrote" without a colon).
# A line ending otherwise cannot match either, and that is nearly every line of a message:
# checking the end first spares the costly lazy `.{0,300}?` scans of both patterns.
_ATTRIBUTION_ENDINGS = (":", ">", "-")
_ENDS_WITH_WROTE = re.compile(rf"(?:{_WROTE})\Z", re.IGNORECASE)


def _could_be_attribution(joined: str) -> bool:
    """A cheap necessary condition for `_ATTRIBUTION` or `_DATE_ADDRESS_ATTRIBUTION`."""
    tail = joined.rstrip()  # the patterns' trailing `\s*` (same whitespace as str.isspace)
    if tail.endswith(_ATTRIBUTION_ENDINGS):
        return True
    # A verb of `_WROTE` spans at most two words ("a écrit"), so the last two are enough;
    # searching the whole line from every position would cost as much as the patterns.
    return _ENDS_WITH_WROTE.search(" ".join(tail.rsplit(None, 2)[-2:])) is not None


def _matches_attribution(chunk: list[str]) -> bool:
    joined = " ".join(
        _strip_quote(line).strip() if _is_quoted(line) else line.strip() for line in chunk
    )
    # The substitution below only touches spaces after "<", never how the text ends.
    if not _could_be_attribution(joined):
        return False
    joined = re.sub(r"<\s+", "<", joined)  # "Name <" + newline + "address>:"
    if len(joined) > 400:
        return False
    return bool(_ATTRIBUTION.match(joined) or _DATE_ADDRESS_ATTRIBUTION.match(joined))


def _marker(lines: list[str], index: int) -> str:
    """talon-style marker of one line: e(mpty), m(quoted), s(plitter), f(orward), t(ext)."""
    line = lines[index]
    if not line.strip():
        return "e"
    if _FORWARD.match(line):
        return "f"
    if _is_quoted(line):
        previous = lines[index - 1] if index else ""
        if previous.rfind("<") > previous.rfind(">"):
            return "t"  # the ">" closes a "<http://…" link wrapped onto this line
        return "m"
    if _ORIGINAL_MESSAGE.match(line) or _attribution_span(lines, index):
        return "s"
    if _RULER.match(line) and _next_nonblank_is_header(lines, index):
        return "s"
    if (
        _is_header_block(lines, index)
        and not (index and _HEADER_LINE.match(lines[index - 1]))
        and any(line.strip() and not _HEADER_LINE.match(line) for line in lines[:index])
    ):
        # A header block above any text is this message's own pasted header, not history.
        return "s"
    return "t"


def _next_nonblank_is_header(lines: list[str], index: int) -> bool:
    for following in range(index + 1, min(index + 4, len(lines))):
        if lines[following].strip():
            return _is_header_block(lines, following)
    return False


# Text written on the same line before an attribution: "Great, thanks! On Mon, ... wrote:".
_SHARED_LINE = re.compile(
    rf"^(?P<reply>.*?\S)(?P<attribution>(?:\s*-{{2,}}\s*|\s+)On\s.{{5,300}}?(?:{_WROTE}):)\s*$"
)


def _split_shared_lines(lines: list[str]) -> list[str]:
    """Put an attribution that shares its line with reply text onto its own line."""
    out: list[str] = []
    for line in lines:
        # `_SHARED_LINE` ends with ":" and needs "On": test that first, it is much cheaper.
        could_share = "On" in line and line.rstrip().endswith(":") and not _is_quoted(line)
        match = _SHARED_LINE.match(line) if could_share else None
        if match and not re.match(r"\s*on\s", line, re.IGNORECASE):
            out.extend([match.group("reply"), match.group("attribution").strip()])
        else:
            out.append(line)
    return out


def _is_inline_answer(lines: list[str], markers: str, match: re.Match[str]) -> bool:
    """Whether text lines found between quoted lines are an interleaved answer.

    Not an answer: a long link that broke the quoted sequence (talon's rule) or the tail of a
    hard-wrapped quoted line that lost its ">" (directly between quoted lines, lower-case start).
    """
    first_text = match.start(1)
    before = lines[first_text - 1] if first_text else ""
    text = lines[first_text].strip()
    if "(http" in before or text.startswith(("(http", "<http")):
        return False
    group = markers[match.start(1) : match.end(1)]
    adjacent = markers[match.start() : match.start(1)] == "" and "e" not in group
    return not (adjacent and len(group) <= 2 and text[:1].islower())


def _quotation_range(lines: list[str], markers: str) -> tuple[int, int] | None:
    """[start, end) of the quoted history, or None to keep everything visible."""
    first_split = re.search(r"[sf]", markers)
    if first_split and markers[first_split.start()] == "f":
        return None  # a forward: what follows is content, not history
    has_splitter = first_split is not None
    if not has_splitter and not re.search(r"(?:me*){3}", markers):
        # Two stray ">" lines without an attribution are more likely content (code, email
        # addresses in brackets) than a quotation.
        return None
    # Interleaved answers: text between quoted lines. Keep everything visible.
    for match in re.finditer(r"(?<=m)e*(t[te]*)(?=m)", markers):
        if _is_inline_answer(lines, markers, match):
            return None
    if has_splitter:
        start = first_split.start()
        tail = markers[start:]
        if "m" not in tail:
            return start, len(markers)  # Outlook style: no ">" markers, history runs to the end
        last_quote = start + tail.rfind("m") + 1
        # A new splitter after the last quote (a second, unquoted older message) is history too.
        if "s" in markers[last_quote:]:
            return start, len(markers)
    else:
        quoted = re.search(r"(?:me*){2,}.*m", markers)
        if quoted is None:
            return None
        start, last_quote = quoted.start(), quoted.end()
    # The blank lines that closed the quotation go with it (so the seam isn't doubled).
    while last_quote < len(markers) and markers[last_quote] == "e":
        last_quote += 1
    return start, last_quote


# Formulaic sign-offs that open a signature block when alone on their line. "Thanks," is not one:
# it usually carries meaning ("Thanks,\nAlex" stays visible).
_VALEDICTION = re.compile(
    r"""^\s*(?:
        (?:best|kind|warm|warmest|many)?\s*regards|best\s+wishes|all\s+the\s+best|cheers|sincerely
      | yours\s+(?:truly|sincerely)|respectfully
      | mit\s+freundlichen\s+grü(?:ß|ss)en|gruß|grüße
      | (?:viele|beste|liebe|freundliche)\s+grü(?:ß|ss)e
      | med\s+venlig(?:\s+hilsen)?|venlig\s+hilsen|(?:de\s+)?bedste\s+hilsner|hilsen|mvh|kh
      | med\s+vänlig(?:a)?\s+hälsning(?:ar)?|vänliga\s+hälsningar|hälsningar|mvh
      | met\s+vriendelijke\s+groet(?:en)?|vriendelijke\s+groet(?:en)?|groeten|groetjes
      | cordialement|bien\s+(?:à\s+vous|cordialement)|salutations|amicalement
      | saludos(?:\s+cordiales)?|atentamente|un\s+saludo|cordiales\s+saludos
      | cordiali\s+saluti|distinti\s+saluti|saluti
      | atenciosamente|cumprimentos|abraços
      | pozdrawiam|z\s+powa(?:ż|z)aniem|s\s+pozdravem|с\s+уважением
    )\s*[,.!]?\s*$""",
    re.IGNORECASE | re.VERBOSE,
)
# The separator a mailing list puts above its footer.
_UNDERSCORES = re.compile(r"^\s*_{2,}\s*$")


def _signature_start(lines: list[str], start: int, end: int) -> int | None:
    """Index where a signature begins in lines[start:end] (the new text), or None."""
    # Trailing blank lines don't count toward "near the end".
    while end > start and not lines[end - 1].strip():
        end -= 1
    if end <= start:
        return None
    first_text = start
    while first_text < end and not lines[first_text].strip():
        first_text += 1
    candidates: list[int] = []
    window = range(max(first_text + 1, end - _MAX_SIGNATURE_LINES), end)
    for index in window:
        line = lines[index]
        is_delimiter = bool(_SIG_DELIMITER.match(line) or _UNDERSCORES.match(line))
        if is_delimiter or (_VALEDICTION.match(line) and end - index <= 6):
            candidates.append(index)
    # Device taglines end the new text wherever they are: mobile clients append the old message
    # below them without any quote marker.
    for index in range(first_text + 1, end):
        line = lines[index]
        if _DEVICE_TAGLINE.match(line) and len(line.split()) <= _MAX_TAGLINE_WORDS:
            candidates.append(index)
            break
    return min(candidates) if candidates else None


def _join(lines: list[str]) -> str:
    return "\n".join(lines).strip("\n")


def _split_text(text: str) -> tuple[list[str], list[str]]:
    lines = _split_shared_lines(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    markers = "".join(_marker(lines, index) for index in range(len(lines)))
    quotation = _quotation_range(lines, markers)
    trimmed_at = [False] * len(lines)
    if quotation is not None:
        start, end = quotation
        for index in range(start, end):
            trimmed_at[index] = True
        new_text_end = start
    else:
        new_text_end = len(lines)
    # Only the text above the quotation (or the whole message) can end with the signature.
    signature = _signature_start(lines, 0, new_text_end)
    if signature is not None:
        for index in range(signature, new_text_end):
            trimmed_at[index] = True
    if quotation is not None and quotation[1] < len(lines):
        # Below the quotation: a mailing-list footer or signature alone is not a reply.
        first = next((i for i in range(quotation[1], len(lines)) if lines[i].strip()), None)
        if first is not None and (
            _SIG_DELIMITER.match(lines[first]) or _UNDERSCORES.match(lines[first])
        ):
            for index in range(first, len(lines)):
                trimmed_at[index] = True
    visible = [line for line, cut in zip(lines, trimmed_at, strict=True) if not cut]
    trimmed = [line for line, cut in zip(lines, trimmed_at, strict=True) if cut]
    if not any(line.strip() for line in visible):
        # Everything looked like history (a bare forward of a quote, a lone "> " reply): showing
        # nothing would hide the message, so show it all.
        return lines, []
    return visible, trimmed


# --- HTML ---------------------------------------------------------------------------------------

# Containers in which clients put the quoted history. Matched on the start tag's attributes.
_HTML_QUOTE_START = re.compile(
    r"""<(?:div|blockquote|span|p|table)\b[^>]*(?:
        class\s*=\s*["'][^"']*\b(?:gmail_quote|gmail_attr|yahoo_quoted|moz-cite-prefix
                                 |OutlookMessageHeader|zmail_extra|mail-quote
                                 |ms-outlook-mobile-reference-message)\b
      | id\s*=\s*["'](?:divRplyFwdMsg|appendonsend|OLK_SRC_BODY_SECTION|isForwardContent
                      |reply-intro)["']
      | type\s*=\s*["']cite["']
    )[^>]*>
    | <hr\b[^>]*id\s*=\s*["']stopSpelling["'][^>]*>
    | <blockquote\b[^>]*>
    | <div\b[^>]*style\s*=\s*["'][^"']*border-top:\s*solid\s+#(?:B5C4DF|E1E1E1)[^>]*>""",
    re.IGNORECASE | re.VERBOSE,
)


class _HtmlText(HTMLParser):
    """Minimal HTML → text: block tags become line breaks, `<blockquote>` content gets "> "."""

    _BLOCKS = frozenset(
        {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table", "pre"}
    )
    _SKIP = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = [""]
        self.depth = 0
        self.skip = 0

    def _newline(self) -> None:
        if self.lines[-1].strip(" >"):
            self.lines.append("")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self.skip += 1
        elif tag == "blockquote":
            self._newline()
            self.depth += 1
        elif tag == "br":
            self.lines.append("")
        elif tag in self._BLOCKS:
            self._newline()

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "blockquote":
            self._newline()
            self.depth = max(0, self.depth - 1)
        elif tag in self._BLOCKS:
            self._newline()

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        text = re.sub(r"\s+", " ", data.replace("\xa0", " "))
        if not text.strip() and not self.lines[-1]:
            return
        if not self.lines[-1] and self.depth:
            self.lines[-1] = "> " * self.depth
        self.lines[-1] += text


def _html_to_text(html: str) -> str:
    parser = _HtmlText()
    try:
        parser.feed(html[:2_000_000])
        parser.close()
    except (AssertionError, ValueError):  # pragma: no cover - old html.parser edge cases
        pass
    lines = [line.rstrip() for line in parser.lines]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def _element_end(html: str, start: int, tag: str) -> int:
    """Index just past the end tag matching the start tag of `tag` at `start` (or the end)."""
    depth = 0
    for match in re.finditer(rf"<(/?){tag}\b[^>]*>", html[start:], re.IGNORECASE):
        depth += -1 if match.group(1) else 1
        if depth == 0:
            return start + match.end()
    return len(html)


def _split_html(html: str) -> tuple[str, str] | None:
    """(visible, trimmed) text of an HTML body without its first quote container, or None.

    A quoting `<blockquote>` or Gmail's `gmail_quote` holds the whole history, so only that
    element is trimmed and what follows it (a disclaimer, a reply below) stays visible; the other
    markers (Outlook's header div, Thunderbird's cite prefix, separators) start the history,
    which then runs to the end.
    """
    match = _HTML_QUOTE_START.search(html)
    if match is None:
        return None
    tag = re.match(r"<(\w+)", match.group(0))
    name = tag.group(1).lower() if tag else ""
    if name == "blockquote" or "gmail_quote" in match.group(0):
        end = _element_end(html, match.start(), name)
    else:
        end = len(html)
    head = _html_to_text(html[: match.start()] + "<br>" + html[end:])
    tail = _html_to_text(html[match.start() : end])
    if not head.strip() or not tail.strip():
        return None
    return head, tail


# --- public API ---------------------------------------------------------------------------------


def split_reply(text: str, *, html: str | None = None) -> ReplySplit:
    """Split a reply into the new text (`visible`) and the quoted history + signature (`trimmed`).

    `text` is the plain-text body (for HTML-only mail, the text `mail.parse` derived from it);
    `html`, when given, is the HTML body, whose quote containers are used when the text shows
    no quotation (and the text is a flat rendering that lost the `>` markers). Nothing is removed:
    every non-blank line of the input ends up in exactly one of the two parts. Never raises.
    """
    try:
        if not text.strip() and html:
            text = _html_to_text(html)
        visible, trimmed = _split_text(text)
        if not any(line.strip() for line in trimmed) and html:
            from_html = _split_html(html)
            if from_html is not None:
                visible_html, trimmed_html = from_html
                # The HTML rendering may not be the same text; re-split it so a signature or an
                # attribution the HTML container missed is still handled.
                head_visible, head_trimmed = _split_text(visible_html)
                return _result(head_visible, [*head_trimmed, trimmed_html])
        return _result(visible, trimmed)
    except Exception:  # boundary: an unexpected input shows everything rather than nothing
        return ReplySplit(visible=text, trimmed="", has_trimmed=False)


def _result(visible: list[str], trimmed: list[str]) -> ReplySplit:
    trimmed_text = _join(trimmed)
    return ReplySplit(
        visible=_join(visible), trimmed=trimmed_text, has_trimmed=bool(trimmed_text.strip())
    )
