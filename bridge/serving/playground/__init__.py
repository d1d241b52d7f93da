"""The playground at `/`: see what the model puts on each platform before registering it anywhere.

The page (plain HTML, CSS and JavaScript in `static/`, nothing fetched from elsewhere) sends an image or a
text to `POST /playground/run` with a platform and the model's parameters. The run goes through the one answer
path (`bridge.core.pipeline.answer`) with that platform's own writer, so the page shows the platform's exact
answer; beside it, what is drawn: that answer read back by the adapter's own reader (`read_answer`), so
switching platform shows what each conversion keeps, and the losses its conversion table declares.

`/playground/run` answers without credentials: `bridge serve` mounts the playground only when it listens on
a loopback address, unless told otherwise (`--playground`/`--no-playground`).
"""

from __future__ import annotations

import mimetypes
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from bridge import samples
from bridge.core import conversions
from bridge.core.errors import InvalidInput
from bridge.core.geometry import mask_to_polygon
from bridge.core.model import Prompts
from bridge.core.pipeline import Writer, answer
from bridge.core.predictions import (
    Box,
    Classification,
    Cuboid,
    Ellipse,
    Line,
    Mask,
    Point,
    Polygon,
    Prediction,
    RotatedBox,
    Skeleton,
    Span,
    Tag,
    Vector,
)
from bridge.core.service import Job, Result, Source
from bridge.platforms.registry import Platforms
from bridge.serving.routes import bridge_route, get_service

STATIC = files(__package__).joinpath("static")


class PlaygroundPrompts(BaseModel):
    """What the user drew on the image, in its pixels: a box (x, y, width, height) and clicks (x, y)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    box: tuple[float, float, float, float] | None = None
    positive: list[tuple[float, float]] = Field(default_factory=list, max_length=1000)
    negative: list[tuple[float, float]] = Field(default_factory=list, max_length=1000)

    def neutral(self) -> Prompts:
        return Prompts(Box(*self.box) if self.box else None, tuple(self.positive), tuple(self.negative))


class PlaygroundRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    platform: str = Field(description="Which platform's answer to show: one the manifest serves.")
    image: str | None = Field(None, description="The image, base64-encoded.")
    text: str | None = Field(None, description="The text, for a text model.")
    params: dict[str, Any] = Field(default_factory=dict, description="The model's parameters.")
    prompts: PlaygroundPrompts = Field(default_factory=PlaygroundPrompts, description="For a model that takes "
                                       "prompts (click to segment).")


def mount(app: FastAPI, platforms: Platforms) -> None:
    """The page at `/`, its files under `/playground/static`, and its API under `/playground`."""
    router = APIRouter(prefix="/playground", tags=["playground"], route_class=bridge_route())

    @router.get("/info")
    async def info(request: Request) -> dict[str, Any]:
        """The model, its classes and parameters, the platforms served, the samples."""
        manifest = request.app.state.manifest
        service = get_service(request)
        return {
            "name": manifest.name, "version": manifest.version, "description": manifest.description,
            "input": service.spec.input, "prompts": service.spec.prompts,
            "classes": [{"name": c.name, "kind": c.kind, "options": list(c.options)} for c in service.spec.classes],
            "platforms": [{"name": name, "title": adapter.title or name}
                          for name, (adapter, _) in platforms.served.items()],
            "params": manifest.params,
            "samples": list(samples.TEXTS if service.spec.input == "text" else samples.IMAGES),
        }

    @router.get("/samples/{name}")
    async def sample(name: str) -> Response:
        """A bundled sample image or text."""
        try:
            data = samples.read(name)
        except KeyError as error:
            raise InvalidInput(str(error.args[0])) from None
        return Response(data, media_type=mimetypes.guess_type(name)[0] or "application/octet-stream")

    @router.post("/run")
    async def run(body: PlaygroundRun, request: Request) -> dict[str, Any]:
        """The platform's exact answer for this input, what its reader gets back of it, and what it loses."""
        if body.platform not in platforms.served:
            raise InvalidInput(f"platform {body.platform!r} is not served; served: {', '.join(platforms.served)}")
        adapter, section = platforms.served[body.platform]
        service = get_service(request)
        manifest, spec = service.manifest, service.spec
        platform = adapter.writer(section, spec, manifest)

        def shown(result: Result) -> dict[str, Any]:
            found = platform.write(result)
            drawn = adapter.read_answer(found, spec, section, size=result.size, text=result.text)
            return {"answer": found, "drawn": [to_json(p) for p in drawn], "size": result.size,
                    "text": result.text, "served": len(result.predictions),
                    "losses": conversions.losses(platform.table, spec, conversions.carried(spec, result.predictions),
                                                 manifest.geometry.simplify_tolerance)}

        image = Source(base64=body.image) if body.image is not None else None
        job = Job(platform=body.platform, image=image, text=body.text, params=body.params,
                  prompts=body.prompts.neutral())
        return await answer(service, job, Writer(platform.platform, platform.table, shown))

    app.include_router(router)
    app.mount("/playground/static", StaticFiles(directory=str(STATIC)), name="playground")

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(STATIC.joinpath("index.html").read_text(encoding="utf-8"))


def to_json(prediction: Prediction) -> dict[str, Any]:
    """A prediction as the page draws it: its shape's type and geometry, in image pixels."""
    return {"label": prediction.label, "confidence": prediction.confidence, "attributes": list(prediction.attributes),
            "text": prediction.text, "frame": prediction.frame, **_shape(prediction.shape)}


def _shape(shape: Any) -> dict[str, Any]:
    if isinstance(shape, Box):
        return {"type": "box", "x": shape.x, "y": shape.y, "w": shape.w, "h": shape.h}
    if isinstance(shape, RotatedBox):
        return {"type": "rotated_box", "cx": shape.cx, "cy": shape.cy, "w": shape.w, "h": shape.h,
                "angle": shape.angle}
    if isinstance(shape, Mask):
        return {**_shape(mask_to_polygon(shape.array)), "type": "mask"}
    if isinstance(shape, Polygon):
        return {"type": "polygon", "parts": [[ring.tolist() for ring in part] for part in shape.parts]}
    if isinstance(shape, Point):
        return {"type": "point", "x": shape.x, "y": shape.y}
    if isinstance(shape, Line):
        return {"type": "line", "points": shape.points.tolist()}
    if isinstance(shape, Ellipse):
        return {"type": "ellipse", "cx": shape.cx, "cy": shape.cy, "rx": shape.rx, "ry": shape.ry,
                "angle": shape.angle}
    if isinstance(shape, Skeleton):
        return {"type": "skeleton", "nodes": [{"name": n.name, "x": n.x, "y": n.y, "occluded": n.occluded}
                                              for n in shape.nodes]}
    if isinstance(shape, Cuboid):
        return {"type": "cuboid", "front": _shape(shape.front), "back": _shape(shape.back)}
    if isinstance(shape, Vector):
        return {"type": "vector", "angle": shape.angle, "length": shape.length}
    if isinstance(shape, Tag):
        return {"type": "tag"}
    if isinstance(shape, Classification):
        answer = shape.answer if isinstance(shape.answer, str) else list(shape.answer)
        return {"type": "classification", "answer": answer}
    if isinstance(shape, Span):
        return {"type": "span", "start": shape.start, "end": shape.end, "quote": shape.text}
    raise TypeError(f"cannot draw a {type(shape).__name__}")
