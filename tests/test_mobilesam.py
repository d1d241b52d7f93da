"""examples/mobilesam: MobileSAM on onnxruntime, with its real weights, on real images.

The ONNX files come from the one-time build step (`python -m examples.mobilesam.build`), run here when the
folder (`$MOBILESAM_DIR`, else `~/.cache/annotation-bridge/mobilesam`) does not hold them yet: a few minutes
the first time (a throwaway venv with torch, the export, its check against torch), nothing after. The tests
need the `sam` extra (onnxruntime): `pip install -e '.[test,ango,sam]'`.

Where things are in `bridge/samples/astronaut.jpg` (384 x 384): the face about x 129-206, y 57-135 (the hair
above it, to y 12); the black helmet at the bottom right, x 209-384, y 258-384; the orange suit, with a round
purple patch about (130, 290).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY

pytest.importorskip("onnxruntime", reason="MobileSAM serves on onnxruntime: pip install -e '.[sam]'")

from bridge import Box, Context, InvalidInput, Prompts  # noqa: E402
from bridge.core.manifest import load_manifest  # noqa: E402
from bridge.samples import read  # noqa: E402
from bridge.serving.app import create_app  # noqa: E402
from examples.mobilesam import build  # noqa: E402
from examples.mobilesam.model import RECIPE, EmbeddingCache, MobileSAM  # noqa: E402
from tests.conftest import ROOT, b64  # noqa: E402
from tests.test_v7 import valid_v7  # noqa: E402

FACE = (165, 85)  # a cheek
HELMET = (320, 300)
SUIT, PATCH = (100, 250), (130, 290)
FACE_BOX = Box(124, 48, 88, 92)


@pytest.fixture(scope="session")
def onnx_dir() -> Path:
    return build.build()  # nothing to do when the folder is up to date


@pytest.fixture(scope="module")
def model(onnx_dir: Path) -> MobileSAM:
    return MobileSAM(onnx_dir=str(onnx_dir))


@pytest.fixture(scope="module")
def astronaut_rgb() -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(read("astronaut.jpg"), np.uint8), cv2.IMREAD_COLOR),
                        cv2.COLOR_BGR2RGB)


def segment(model: MobileSAM, image: np.ndarray, **prompts) -> tuple[np.ndarray, float]:
    (found,) = model.predict(image, Context(prompts=Prompts(**prompts)))
    assert found.label == "object" and 0 < found.confidence <= 1
    mask = found.shape.array
    assert mask.shape == image.shape[:2] and mask.dtype == bool
    return mask, found.confidence


def at(mask: np.ndarray, point: tuple[int, int]) -> bool:
    return bool(mask[point[1], point[0]])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def counts() -> tuple[float, float]:
    return (REGISTRY.get_sample_value("mobilesam_embedding_cache_hits_total") or 0.0,
            REGISTRY.get_sample_value("mobilesam_embedding_cache_misses_total") or 0.0)


class CountingEncoder:
    """The model's real encoder session, counting its runs."""

    def __init__(self, session) -> None:
        self.session, self.runs = session, 0

    def run(self, *args, **kwargs):
        self.runs += 1
        return self.session.run(*args, **kwargs)


# --- masks ----------------------------------------------------------------------------------------------------


def test_a_box_around_the_face_gives_the_face(model, astronaut_rgb):
    mask, confidence = segment(model, astronaut_rgb, box=FACE_BOX)
    box = np.zeros_like(mask)
    box[FACE_BOX.y:FACE_BOX.y + FACE_BOX.h, FACE_BOX.x:FACE_BOX.x + FACE_BOX.w] = True
    assert (mask & box).sum() >= 0.95 * mask.sum()  # inside the box
    assert (mask & box).sum() >= 0.5 * box.sum()  # covering most of it
    assert at(mask, FACE) and not at(mask, (168, 25))  # the face, not the hair above it
    assert confidence > 0.8


def test_clicks_on_the_helmet_and_on_the_face_give_different_masks(model, astronaut_rgb):
    helmet, _ = segment(model, astronaut_rgb, positive=(HELMET,))
    face, _ = segment(model, astronaut_rgb, positive=(FACE,))
    assert at(helmet, HELMET) and not at(helmet, FACE)
    assert at(face, FACE) and not at(face, HELMET)
    assert iou(helmet, face) < 0.01
    x, y, w, h = cv2.boundingRect(helmet.astype(np.uint8))
    assert x > 190 and y > 240 and 10_000 < helmet.sum() < 30_000  # the helmet, bottom right
    x, y, w, h = cv2.boundingRect(face.astype(np.uint8))
    assert 110 < x < 150 and 40 < y < 80 and w < 100 and h < 100


def test_a_negative_click_removes_what_it_touches(model, astronaut_rgb):
    suit, _ = segment(model, astronaut_rgb, positive=(SUIT,))
    assert at(suit, SUIT) and at(suit, PATCH)  # the suit, its patch included
    without_patch, _ = segment(model, astronaut_rgb, positive=(SUIT,), negative=(PATCH,))
    assert at(without_patch, SUIT) and not at(without_patch, PATCH)
    x, y = PATCH
    assert without_patch[y - 5:y + 6, x - 5:x + 6].sum() < 0.2 * 121  # around the click too
    assert without_patch.sum() > 0.7 * suit.sum()  # the rest of the suit stays


def test_masks_follow_the_image_when_it_is_not_square(model):
    from skimage import data

    coffee = data.coffee()  # 400 x 600: resized to 683 x 1024 and padded
    cup, _ = segment(model, coffee, positive=((300, 150),))
    x, y, w, h = cv2.boundingRect(cup.astype(np.uint8))
    assert 180 < x < 230 and 70 < y < 120 and 100 < w < 250 and 60 < h < 140  # the coffee in the cup
    turned, _ = segment(model, np.ascontiguousarray(coffee.transpose(1, 0, 2)), positive=((150, 300),))
    assert iou(turned.T, cup) > 0.9  # same picture turned: same mask turned


# --- the embedding cache --------------------------------------------------------------------------------------


def test_the_second_prompt_on_an_image_hits_the_cache_and_does_not_run_the_encoder(onnx_dir, astronaut_rgb):
    model = MobileSAM(onnx_dir=str(onnx_dir), cache_size=2)
    model.encoder = encoder = CountingEncoder(model.encoder)
    hits, misses = counts()
    segment(model, astronaut_rgb, box=FACE_BOX)
    assert counts() == (hits, misses + 1) and encoder.runs == 1
    segment(model, astronaut_rgb.copy(), positive=(HELMET,))  # the same pixels in another array
    segment(model, astronaut_rgb, positive=(SUIT,), negative=(PATCH,))
    assert counts() == (hits + 2, misses + 1) and encoder.runs == 1

    other = astronaut_rgb.copy()
    other[0, 0] ^= 1  # one pixel differs: another image
    segment(model, other, positive=(HELMET,))
    assert counts() == (hits + 2, misses + 2) and encoder.runs == 2
    third = np.ascontiguousarray(astronaut_rgb[::-1])
    segment(model, third, positive=(FACE,))  # cache_size 2: the least recently used (the astronaut) goes
    segment(model, other, positive=(FACE,))
    assert counts() == (hits + 3, misses + 3) and encoder.runs == 3
    segment(model, astronaut_rgb, positive=(FACE,))
    assert counts() == (hits + 3, misses + 4) and encoder.runs == 4 and len(model.cache) == 2


def test_prompts_on_one_image_at_once_encode_it_once(onnx_dir, astronaut_rgb):
    model = MobileSAM(onnx_dir=str(onnx_dir))
    model.encoder = encoder = CountingEncoder(model.encoder)
    hits, misses = counts()
    prompts = [{"positive": (FACE,)}, {"positive": (HELMET,)}, {"box": FACE_BOX}, {"positive": (SUIT,)}]
    masks: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def ask(i: int) -> None:
        try:
            masks[i] = segment(model, astronaut_rgb, **prompts[i])[0]
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert encoder.runs == 1 and counts() == (hits + 3, misses + 1)
    assert at(masks[0], FACE) and at(masks[1], HELMET) and at(masks[3], SUIT)


def test_the_cache_keeps_its_bound_and_forgets_failed_encodings():
    cache = EmbeddingCache(2)
    assert cache.get(b"a", lambda: np.zeros(1)) is cache.get(b"a", lambda: pytest.fail("encoded twice"))
    cache.get(b"b", lambda: np.ones(1))
    cache.get(b"c", lambda: np.ones(1))
    assert len(cache) == 2

    def broken() -> np.ndarray:
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        cache.get(b"d", broken)
    assert cache.get(b"d", lambda: np.full(1, 7.0))[0] == 7.0  # tried again, not the stored failure
    with pytest.raises(ValueError, match="cache_size"):
        EmbeddingCache(0)


# --- what it refuses ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("prompts", "message"), [
    ({}, "needs a prompt"),
    ({"negative": ((10, 10),)}, "at least one positive click"),
    ({"positive": ((400, 10),)}, r"positive click \(400, 10\) lies outside the 384x384 image"),
    ({"positive": ((10, -1),)}, "lies outside"),
    ({"positive": (FACE,), "negative": ((10, 385),)}, r"negative click \(10, 385\) lies outside"),
    ({"positive": ((float("inf"), 10),)}, "lies outside"),
    ({"box": Box(500, 500, 20, 20)}, "lies outside the 384x384 image"),
    ({"box": Box(100, 100, 0, 50)}, "is empty"),
    ({"box": Box(100, 100, 50, -5)}, "is empty"),
    ({"positive": tuple((float(i % 384), 10.0) for i in range(300))}, r"300 clicks .*\(at most 64\)"),
])
def test_bad_prompts_are_refused_before_encoding(model, astronaut_rgb, prompts, message):
    before = counts()
    with pytest.raises(InvalidInput, match=message):
        model.predict(astronaut_rgb[::-1], Context(prompts=Prompts(**prompts)))  # an image not in the cache
    assert counts() == before


def test_a_box_partly_outside_the_image_is_clipped_to_it(model, astronaut_rgb):
    mask, _ = segment(model, astronaut_rgb, box=Box(200, 250, 400, 400))  # the helmet, past the corner
    assert at(mask, HELMET) and not at(mask, FACE)


def test_a_folder_without_the_built_files_names_the_build_command(tmp_path, onnx_dir):
    with pytest.raises(FileNotFoundError, match="python -m examples.mobilesam.build --out"):
        MobileSAM(onnx_dir=str(tmp_path))
    for name in ("encoder.onnx", "decoder.onnx"):
        (tmp_path / name).symlink_to(onnx_dir / name)
    recipe = json.loads((onnx_dir / RECIPE).read_text())
    recipe["files"]["decoder.onnx"]["sha256"] = "0" * 64
    (tmp_path / RECIPE).write_text(json.dumps(recipe))
    with pytest.raises(ValueError, match="decoder.onnx does not have the sha256"):
        MobileSAM(onnx_dir=str(tmp_path))
    assert not build.up_to_date(tmp_path) and build.up_to_date(onnx_dir)


def test_the_build_records_its_sources_and_its_check(onnx_dir):
    recipe = json.loads((onnx_dir / RECIPE).read_text())
    assert recipe["source"]["sdist_sha256"] == build.SDIST_SHA256
    assert recipe["source"]["checkpoint_sha256"] == build.CHECKPOINT_SHA256
    assert all(recipe["check"]["max_abs_diff"][k] <= v for k, v in build.TOLERANCE.items())
    before = {p.name: p.stat().st_mtime_ns for p in onnx_dir.iterdir()}
    assert build.build(onnx_dir) == onnx_dir.resolve()  # up to date: nothing rewritten
    assert {p.name: p.stat().st_mtime_ns for p in onnx_dir.iterdir()} == before


# --- served -------------------------------------------------------------------------------------------------


def test_served_to_v7_the_auto_annotate_box_gives_the_face_and_metrics_count_the_cache(
        serve_app, onnx_dir, monkeypatch):
    monkeypatch.setenv("MOBILESAM_DIR", str(onnx_dir))
    base = serve_app(create_app(load_manifest(ROOT / "manifests" / "mobilesam.yaml")))
    image = {"base64": b64(read("astronaut.jpg"))}

    def hits() -> float:
        text = httpx.get(f"{base}/metrics", timeout=10).text
        (line,) = [line for line in text.splitlines() if line.startswith("mobilesam_embedding_cache_hits_total")]
        return float(line.split()[1])

    before = hits()
    box = {"x": FACE_BOX.x, "y": FACE_BOX.y, "w": FACE_BOX.w, "h": FACE_BOX.h}
    for _ in range(2):  # the second prompt on the image is answered from the cache
        answer = httpx.post(f"{base}/v7/infer", json={"image": image, "params": {"bbox": box}}, timeout=60)
        (face,) = valid_v7(answer.json())["results"]
        assert face["name"] == "Object" and 0.8 < face["confidence"] <= 1
        path = np.array([[p["x"], p["y"]] for p in face["polygon"]["path"]])
        assert (path.min(axis=0) >= (FACE_BOX.x - 8, FACE_BOX.y - 8)).all()  # its simplified outline
        assert (path.max(axis=0) <= (FACE_BOX.x + FACE_BOX.w + 8, FACE_BOX.y + FACE_BOX.h + 8)).all()
    assert hits() == before + 1
    nothing = httpx.post(f"{base}/v7/infer", json={"image": image}, timeout=60)
    assert nothing.status_code == 422 and "needs a prompt" in nothing.json()["error"]
