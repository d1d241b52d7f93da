"""Models whose answers are easy to get wrong on a platform: questions that share options, two answers to one
single-choice question, swapped box corners, shapes smaller than a pixel, text with emoji."""

from __future__ import annotations

import numpy as np

from bridge import Box, Classification, ClassSpec, Context, ModelSpec, Prediction, RotatedBox, Span, Tag


class Questions:
    """Two yes/no questions (their options share names); answers `q2 = yes`."""

    spec = ModelSpec(classes=[ClassSpec(name="q1", kind="radio", options=("yes", "no")),
                              ClassSpec(name="q2", kind="radio", options=("yes", "no"))])

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        return [Prediction("q2", Classification("yes"), 0.8)]


class TwoAnswers:
    """Two answers to one single-choice question (`rain`: yes 0.6, no 0.7) and to one free-text class; a tag and
    a box whose attribute `occluded` the run's class mapping may name."""

    spec = ModelSpec(classes=[ClassSpec(name="rain", kind="radio", options=("yes", "no")),
                              ClassSpec(name="note", kind="text"), ClassSpec(name="flag", kind="tag"),
                              ClassSpec(name="car", kind="box")])

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        return [Prediction("rain", Classification("yes"), 0.6), Prediction("rain", Classification("no"), 0.7),
                Prediction("note", Classification("first"), 0.9), Prediction("note", Classification("second"), 0.2),
                Prediction("flag", Tag(), 0.9), Prediction("car", Box(2, 3, 10, 8), 0.8, attributes=("occluded",))]


class Swapped:
    """A box whose corners are swapped (negative width and height), or with `nan` a NaN coordinate."""

    spec = ModelSpec(classes=[ClassSpec(name="car", kind="box")])

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        if context.params.get("nan"):
            return [Prediction("car", Box(float("nan"), 3, 10, 8))]
        return [Prediction("car", Box(30, 20, -10, -8), 0.9)]


class Small:
    """A 3x1 rotated box, and a rotated box that covers no pixel centre."""

    spec = ModelSpec(classes=[ClassSpec(name="thin", kind="rotated_box"), ClassSpec(name="speck", kind="rotated_box")])

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        return [Prediction("thin", RotatedBox(20.5, 20.5, 3, 1, 30), 0.9),
                Prediction("speck", RotatedBox(10.0, 10.0, 0.4, 0.4, 0), 0.9)]


class Named:
    """A text model that finds the name `Tom` (with any combining marks after it) wherever it is."""

    spec = ModelSpec(input="text", classes=[ClassSpec(name="name", kind="entity")])

    def predict(self, text: str, context: Context) -> list[Prediction]:
        start = text.find("Tom")
        end = start + 3
        while end < len(text) and 0x300 <= ord(text[end]) <= 0x36F:  # combining diacritical marks
            end += 1
        return [Prediction("name", Span(start, end, text[start:end]), 0.9)] if start >= 0 else []
