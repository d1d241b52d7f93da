"""The face detector example (`examples/faces.py`): its answer does not depend on the order in which OpenCV's
threads happened to find things (two processes, `bridge serve` and a Ray replica, once answered the same eyes
in two orders)."""

from __future__ import annotations

import numpy as np

from examples.faces import _eyes


class Cascade:
    """Finds what it is given, in the order given."""

    def __init__(self, found: list[tuple[int, int, int, int]]) -> None:
        self.found = found

    def detectMultiScale(self, *args: object, **kwargs: object) -> np.ndarray:  # noqa: N802 (OpenCV's name)
        return np.array(self.found, np.int32)


def test_eyes_of_one_size_come_in_one_order_whatever_order_opencv_found_them_in():
    eyes = [(30, 6, 8, 8), (10, 5, 8, 8), (20, 20, 4, 4)]  # the third is smaller: not one of the two kept
    upper_face = np.zeros((40, 50), np.uint8)
    found = [_eyes(Cascade(order), upper_face, 100, 200, 0.9) for order in (eyes, eyes[::-1])]
    assert found[0] == found[1]
    assert [(p.shape.x, p.shape.y) for p in found[0]] == [(114.0, 209.0), (134.0, 210.0)]
