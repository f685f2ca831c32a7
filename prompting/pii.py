"""Personal data found and replaced in text: e-mail addresses, phone numbers and payment card numbers.

Phone numbers are found by `phonenumbers` (Google's libphonenumber, the library Presidio's phone recognizer wraps):
a number valid in any of `REGIONS` (or written internationally with +), or a possible number of at least
`PHONE_MIN_DIGITS` digits (fictional ranges such as 555-01xx and 07700 900xxx are not "valid" but are phone
numbers all the same; scrubbing errs towards removing). Cards are 13-19 digits that pass the Luhn check. Presidio
itself was measured here and not used: importing its analyzer loads spaCy (9.6 s), its phone recognizer took
25 ms per text, and its e-mail validator fetches the public-suffix list from the network.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import phonenumbers
from phonenumbers import Leniency, PhoneNumberMatcher

REGIONS = ("US", "GB", "DE", "FR", "IN")
PHONE_MIN_DIGITS = 10
EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")  # not phone numbers
PLACEHOLDERS = {"email": "<EMAIL>", "phone": "<PHONE>", "card": "<CARD>"}


@dataclass(frozen=True)
class Found:
    kind: str  # email | phone | card
    start: int
    end: int
    text: str


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _phones(text: str) -> list[Found]:
    found = {}
    for region in REGIONS:
        for match in PhoneNumberMatcher(text, region, leniency=Leniency.POSSIBLE):
            digits = re.sub(r"\D", "", match.raw_string)
            if DATE.fullmatch(match.raw_string.strip()):
                continue
            valid = phonenumbers.is_valid_number(match.number)
            if valid or len(digits) >= PHONE_MIN_DIGITS:
                found[(match.start, match.end)] = Found("phone", match.start, match.end, match.raw_string)
    return list(found.values())


def find(text: str) -> list[Found]:
    """Every personal value in `text`, earliest first, overlaps resolved in favour of the longer match."""
    spans = [Found("email", m.start(), m.end(), m.group()) for m in EMAIL.finditer(text)]
    spans += [
        Found("card", m.start(), m.end(), m.group())
        for m in CARD.finditer(text)
        if luhn(re.sub(r"\D", "", m.group()))
    ]
    spans += _phones(text) if any(ch.isdigit() for ch in text) else []
    spans.sort(key=lambda f: (f.start, -(f.end - f.start)))
    kept: list[Found] = []
    for span in spans:
        if not kept or span.start >= kept[-1].end:
            kept.append(span)
    return kept


def scrub(text: str) -> tuple[str, Counter]:
    """`text` with every personal value replaced by its placeholder, and how many of each kind were replaced."""
    found = find(text)
    if not found:
        return text, Counter()
    out, last = [], 0
    for span in found:
        out += [text[last : span.start], PLACEHOLDERS[span.kind]]
        last = span.end
    out.append(text[last:])
    return "".join(out), Counter(f.kind for f in found)
