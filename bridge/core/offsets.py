"""Text offsets as a platform counts them: Python counts code points, JavaScript counts UTF-16 code units.

A model's `Span` counts code points (`text[start:end]`). Labelbox's and Ango's editors run in the browser,
where a string's indices are UTF-16 code units: a character outside the Basic Multilingual Plane (most emoji,
some CJK) is one code point and two code units, so every offset after it moves by one. Combining marks are
code points of their own in both counts (`e` + U+0301 is 2 in Python and in JavaScript). Writers convert at
the edge with `Utf16(text).units(i)`, readers back with `Utf16(text).points(u)`.
"""

from __future__ import annotations

import numpy as np


class Utf16:
    """Offsets into one text, converted between code points and UTF-16 code units."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._units: np.ndarray | None = None  # code units before each code point, and the total: len(text) + 1
        codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
        if (codes > 0xFFFF).any():
            self._units = np.concatenate([[0], np.cumsum(np.where(codes > 0xFFFF, 2, 1))])

    def units(self, point: int) -> int:
        """The UTF-16 offset of code point offset `point` (0 to `len(text)`)."""
        return point if self._units is None else int(self._units[point])

    def points(self, unit: int) -> int:
        """The code point offset of UTF-16 offset `unit`; `ValueError` when it lies outside the text or between
        the two halves of one character."""
        if self._units is None:
            if not 0 <= unit <= len(self.text):
                raise ValueError(f"offset {unit} lies outside the text of {len(self.text)} UTF-16 code units")
            return unit
        point = int(np.searchsorted(self._units, unit))
        if point >= len(self._units) or unit < 0:
            raise ValueError(f"offset {unit} lies outside the text of {int(self._units[-1])} UTF-16 code units")
        if self._units[point] != unit:
            raise ValueError(f"offset {unit} falls between the two UTF-16 code units of "
                             f"{self.text[point - 1]!r}: a span starts and ends between characters")
        return point

    def quote(self, start: int, end: int) -> str:
        """The text between UTF-16 offsets `start` and `end` (JavaScript's `text.slice(start, end)`);
        `ValueError` as `points` says."""
        return self.text[self.points(start):self.points(end)]

    @property
    def length(self) -> int:
        """The text's length in UTF-16 code units."""
        return self.units(len(self.text))
