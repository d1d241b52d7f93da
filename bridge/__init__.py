"""The core of the bridge: the neutral format, the model interface, geometry, media and the service.

A model imports what it needs from here::

    from bridge import ClassSpec, Context, ModelSpec, Prediction, Box
"""

from bridge.core.errors import BridgeError, InvalidInput
from bridge.core.model import ClassSpec, Context, Model, ModelSpec, Prompts
from bridge.core.predictions import (
    Box,
    Classification,
    Cuboid,
    Ellipse,
    Line,
    Mask,
    Node,
    Point,
    Polygon,
    Prediction,
    RotatedBox,
    Skeleton,
    Span,
    Tag,
    Vector,
)

__all__ = [
    "Box", "BridgeError", "ClassSpec", "Classification", "Context", "Cuboid", "Ellipse", "InvalidInput", "Line",
    "Mask", "Model", "ModelSpec", "Node", "Point", "Polygon", "Prediction", "Prompts", "RotatedBox", "Skeleton", "Span",
    "Tag", "Vector",
]
