"""The project's GrabCut example (`examples/grabcut.py`, a model that takes a box prompt) as a CVAT interaction
function, through `adapters.cvat.convert`; for the tests. cvat-cli loads this file by path in a spawned worker,
so it imports only the installed `bridge` and `adapters`, and the example by its path.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cvat_sdk.auto_annotation as cvataa
import numpy as np
import PIL.Image

from adapters.cvat.convert import prompts_from_cvat, to_interaction
from bridge import Context

_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "grabcut.py"


def _grabcut(margin: float):
    spec = importlib.util.spec_from_file_location("cvat_grabcut_example", _EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.GrabCutSegmenter(margin=margin)


class GrabCutFunction:
    """A box is required (GrabCut starts from one); clicks are not used, so none are allowed."""

    spec = cvataa.InteractionFunctionSpec(min_pos_points=0, min_bounding_boxes=1)

    def __init__(self, margin: float, iterations: int) -> None:
        self._model, self._iterations = _grabcut(margin), iterations

    def detect(self, context, image: PIL.Image.Image, prompts) -> list:
        array = np.asarray(image.convert("RGB"))
        found = self._model.predict(array, Context(params={"iterations": self._iterations}, platform="cvat",
                                                   prompts=prompts_from_cvat(prompts)))
        return to_interaction(found, size=array.shape[:2])


def create(margin: float = 0.2, iterations: int = 3) -> GrabCutFunction:
    return GrabCutFunction(margin, iterations)
