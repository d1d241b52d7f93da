"""Personal-data tagger: emails, URLs, phone numbers, dates and amounts of money in a text, as entity spans.

Regular expressions, no weights. Where two kinds match the same characters the first kind in `KINDS` wins
(a URL over an email inside it, a date over the digits a phone pattern would also take). Spans are
[start, end) character offsets into the text. The confidence is a fixed prior per kind (patterns give no
probability): how often such a match is what it looks like.
"""

from __future__ import annotations

import re

from bridge import ClassSpec, Context, ModelSpec, Prediction, Span

_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
          r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?")
_AMOUNT = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_SCALE = r"(?:\s?(?:k|K|m|M|bn|million|billion|thousand))?"

PATTERNS: dict[str, re.Pattern[str]] = {
    "url": re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)\]}]"),
    "email": re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
    "money": re.compile(
        rf"(?:[$€£¥]\s?(?:{_AMOUNT}){_SCALE}|(?:USD|EUR|GBP|CHF|JPY)\s?(?:{_AMOUNT}){_SCALE}"
        rf"|\b(?:{_AMOUNT}){_SCALE}\s?(?:USD|EUR|GBP|CHF|JPY|dollars?|euros?|pounds?)\b)"),
    "date": re.compile(
        rf"\b(?:\d{{4}}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
        rf"|(?:0?[1-9]|[12]\d|3[01])[/.](?:0?[1-9]|1[0-2])[/.](?:\d{{4}}|\d{{2}})"
        rf"|(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?\s{_MONTH}(?:,?\s\d{{4}})?"
        rf"|{_MONTH}\s(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?(?:,?\s\d{{4}})?)(?!\w)"),
    "phone": re.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?"
                        r"\d{2,4}(?:[\s.-]\d{2,4}){1,4}(?![\w-])"),
}
"""One pattern per kind, in the order kinds win overlaps."""

CONFIDENCE = {"url": 0.95, "email": 0.95, "money": 0.9, "date": 0.85, "phone": 0.75}

KINDS = tuple(PATTERNS)

MIN_PHONE_DIGITS = 7


class EntityTagger:
    spec = ModelSpec(input="text", classes=[
        ClassSpec(name="email", kind="entity", description="An email address."),
        ClassSpec(name="url", kind="entity", description="A web address (http, https or www.)."),
        ClassSpec(name="phone", kind="entity", description="A phone number, 7 digits or more."),
        ClassSpec(name="date", kind="entity",
                  description="A calendar date (ISO, day/month/year, or with a month name)."),
        ClassSpec(name="money", kind="entity", description="An amount with a currency sign, code or word."),
    ])

    def predict(self, text: str, context: Context) -> list[Prediction]:
        wanted = set(context.params.get("kinds") or KINDS)
        taken: list[tuple[int, int]] = []
        found = []
        for kind, pattern in PATTERNS.items():
            if kind not in wanted:
                continue
            for match in pattern.finditer(text):
                start, end = match.span()
                if kind == "phone" and sum(c.isdigit() for c in match.group()) < MIN_PHONE_DIGITS:
                    continue
                if any(start < e and s < end for s, e in taken):
                    continue
                taken.append((start, end))
                found.append(Prediction(kind, Span(start, end, match.group()), CONFIDENCE[kind]))
        return sorted(found, key=lambda p: p.shape.start)
