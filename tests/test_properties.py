"""Property-based tests (hypothesis): whatever bytes or JSON a caller sends, the media decoder and each
adapter's request parsing answer with a result or one of our own clear errors, never anything else.

"Our own errors" are `BridgeError`s (a status and a message) and pydantic's `ValidationError` from a request
model, which the routes answer as 422. Bounded and repeatable: a fixed number of examples each, derandomized
(the same examples on every run, so CI does not flicker), no deadline (the machine is shared), small real
images.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydantic import ValidationError

from adapters.ango import convert as ango
from adapters.labelbox import api as labelbox_api
from adapters.labelbox import convert as labelbox
from adapters.labelbox.section import LabelboxSection
from adapters.v7 import api as v7_api
from adapters.v7 import convert as v7
from bridge.core.errors import BridgeError
from bridge.core.manifest import Manifest
from bridge.core.media import MediaLimits, decode_image
from bridge.core.params import Params
from tests.test_media_attacks import broken_exif_jpeg

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on corrupt EXIF

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    derandomize=True, database=None)
LIMITS = MediaLimits(max_image_pixels=200_000)


# --- images ---------------------------------------------------------------------------------------------------


def _real_images() -> list[bytes]:
    """A real photo (scikit-image's astronaut, scaled down) in the formats callers send, with EXIF where the
    format carries it, and a few modes."""
    from skimage import data, transform

    photo = (transform.resize(data.astronaut(), (48, 64)) * 255).astype(np.uint8)
    image = Image.fromarray(photo)
    exif = Image.Exif()
    exif[0x0112], exif[0x010F], exif[0x0132] = 6, "Canon", "2024:05:01 12:00:00"
    exif[0x8769] = {0x9003: "2024:05:01 12:00:00", 0x920A: 4.5}
    encoded = []
    for fmt, mode, options in (("JPEG", "RGB", {"exif": exif.tobytes(), "quality": 80}),
                               ("PNG", "RGBA", {"exif": exif.tobytes()}), ("PNG", "P", {}),
                               ("WEBP", "RGB", {"exif": exif.tobytes()}), ("GIF", "P", {}),
                               ("TIFF", "RGB", {"exif": exif.tobytes()}), ("PNG", "I;16", {}), ("BMP", "L", {})):
        buffer = io.BytesIO()
        converted = image.convert("L").convert("I;16") if mode == "I;16" else image.convert(mode)
        converted.save(buffer, fmt, **options)
        encoded.append(buffer.getvalue())
    return encoded


IMAGES = _real_images()


def _exif_span(data: bytes) -> tuple[int, int]:
    """Where the EXIF block of an encoded image lies (the whole file for TIFF), or (0, 0)."""
    for marker in (b"Exif\0\0", b"eXIf", b"EXIF"):
        if (start := data.find(marker)) >= 0:
            return start + len(marker), min(len(data), start + len(marker) + 200)
    return (0, min(len(data), 300)) if data[:2] in (b"II", b"MM") else (0, 0)


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A real image with a few bytes changed, runs of bytes overwritten or cut, or the file truncated; the
    mutations favour the EXIF block and the first few hundred bytes, where the headers live."""
    data = bytearray(draw(st.sampled_from(IMAGES)))
    exif = _exif_span(bytes(data))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["byte", "byte", "byte", "run", "cut", "truncate"]))
        low, high = draw(st.sampled_from([exif, exif, (0, 300), (0, len(data) - 1)]))
        high = min(high, len(data) - 1)
        at = draw(st.integers(min(low, high), high))
        if kind == "byte":
            data[at] = draw(st.integers(0, 255))
        elif kind == "run":
            run = draw(st.binary(min_size=1, max_size=16))
            data[at:at + len(run)] = run
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 32))]
        else:
            del data[max(at, 1):]
        if len(data) < 2:
            break
    return bytes(data)


@SETTINGS
@given(mutated_images())
@example(broken_exif_jpeg())  # a mutant the search finds about once in 300: Pillow's exif_transpose fails on it
def test_decoding_mutated_real_images_gives_an_image_or_our_error(data: bytes):
    try:
        image = decode_image(data, LIMITS)
    except BridgeError as error:
        assert 400 <= error.status < 500 and error.message
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] * image.shape[1] <= LIMITS.max_image_pixels


@settings(max_examples=50, deadline=None, database=None, derandomize=True)
@given(st.binary(max_size=512))
def test_decoding_random_bytes_gives_our_error(data: bytes):
    with pytest.raises(BridgeError):
        decode_image(data, LIMITS)


# --- request parsing ------------------------------------------------------------------------------------------

MANIFEST = Manifest.model_validate({
    "name": "properties",
    "model": {"factory": "examples/faces.py:FaceDetector"},
    "params": {"type": "object", "properties": {
        "min_confidence": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
        "only": {"type": "array", "items": {"type": "string"}},
    }},
})
PARAMS = Params(MANIFEST.params)

numbers = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=20)


def maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """The value mostly, else any JSON value in its place, or nothing."""
    return st.one_of(strategy, strategy, strategy, json_values, st.just(None))


def objects(**fields: st.SearchStrategy) -> st.SearchStrategy:
    """Dicts with some of `fields` (each possibly replaced by junk) and some junk keys."""
    return st.fixed_dictionaries({}, optional={k: maybe(v) for k, v in fields.items()}).flatmap(
        lambda known: st.dictionaries(st.text(max_size=8), json_values, max_size=2).map(
            lambda extra: {**extra, **known}))


urls = st.one_of(st.sampled_from(["http://example.com/a.png", "http://example.com:99999/a.png",
                                  "http://[::1/x", "http://" + "a" * 64 + ".com/", "http://ex\udcffample.com/"]),
                 st.text(max_size=30))
images = objects(url=urls, base64=st.text(max_size=30))
boxes = objects(x=numbers, y=numbers, w=numbers, h=numbers)
v7_params = objects(bbox=boxes, min_confidence=numbers, only=st.lists(st.text(max_size=5), max_size=3),
                    id=st.text(max_size=5), image=images)
usual_v7 = st.fixed_dictionaries({
    "image": st.fixed_dictionaries({"base64": st.text(min_size=1, max_size=20)}),
    "params": st.fixed_dictionaries(
        {"bbox": st.fixed_dictionaries({"x": st.floats(), "y": numbers, "w": st.floats(min_value=0),
                                        "h": st.floats(min_value=0)})},
        optional={"min_confidence": numbers, "only": json_values})})
v7_requests = st.one_of(
    usual_v7,  # the usual shape, with odd numbers inside
    st.fixed_dictionaries({"image": images, "params": v7_params}),
    objects(image=images, video=objects(url=urls, frame_urls=st.lists(images, max_size=3)),
            params=v7_params, details=objects(image=images, params=v7_params)))


def check_params(params: dict) -> None:
    """Parameters that reach the model are validated by the manifest (422 otherwise), and finite."""
    try:
        resolved = PARAMS.resolve(params)
    except BridgeError as error:
        assert error.status == 422
        return
    assert all(math.isfinite(v) for v in resolved.values() if isinstance(v, float))


@SETTINGS
@given(v7_requests)
def test_v7_requests_parse_to_a_job_or_our_error(body):
    try:
        request = v7_api.V7InferRequest.model_validate(body)
    except ValidationError:
        return
    try:
        job = v7.to_job(request)
    except BridgeError as error:
        assert 400 <= error.status < 500
        return
    assert (job.image is None) != (job.video is None)
    if (box := job.prompts.box) is not None:
        assert all(math.isfinite(value) for value in (box.x, box.y, box.w, box.h))
    check_params(job.params)


parts = objects(text=st.text(max_size=20), image=st.text(max_size=20))
messages = objects(role=st.sampled_from(["system", "user", "assistant", "tool"]), parts=st.lists(parts, max_size=3))
labelbox_requests = objects(prompt=st.lists(messages, max_size=3),
                            inference_params=st.dictionaries(st.text(max_size=8), json_values, max_size=3),
                            min_confidence=numbers)


@SETTINGS
@given(labelbox_requests, st.sampled_from(["image", "text"]), st.integers(-3, 2))
def test_labelbox_requests_parse_to_a_job_or_our_error(body, reads, text_part):
    try:
        request = labelbox_api.LabelboxRequest.model_validate(body)
    except ValidationError:
        return
    section = LabelboxSection(text_part=text_part)
    try:
        job = labelbox.to_job(request, reads, section, PARAMS)
    except BridgeError as error:
        assert error.status == 422
        return
    assert (job.image is not None) if reads == "image" else isinstance(job.text, str)
    check_params(job.params)


config_json = st.one_of(st.none(), st.text(max_size=30), json_values,
                        json_values.map(lambda value: __import__("json").dumps(value)),
                        st.sampled_from(['{"min_confidence": NaN}', '{"min_confidence": 1e400}', "[]", "null"]))
category_schemas = maybe(st.lists(objects(schemaId=st.text(max_size=5), modelClass=st.text(max_size=5)),
                                  max_size=3))


@SETTINGS
@given(config_json, category_schemas)
def test_ango_run_params_and_class_ids_or_our_error(config, schema):
    try:
        params = PARAMS.resolve(ango.run_params(config))
    except BridgeError as error:
        assert error.status == 422 and error.message.startswith(("configJSON", "invalid parameter", "unknown"))
    else:
        assert all(math.isfinite(v) for v in params.values() if isinstance(v, float))
    try:
        ids = ango.class_ids(schema)
    except BridgeError as error:
        assert error.status == 422
    else:
        assert ids is None or all(isinstance(k, str) and isinstance(v, str) for k, v in ids.items())
