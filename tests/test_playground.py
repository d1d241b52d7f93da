"""The playground in a real browser: headless Chromium (Debian's package, which `.ci/run` installs) driven by
Playwright. What is drawn is checked from the page's own state (`window.playground`); a screenshot per
platform is kept in `test-artifacts/`."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from bridge.core.loading import build_model
from bridge.platforms.registry import discover
from bridge.serving.app import create_app
from tests.conftest import ROOT, encode_image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("BRIDGE_TEST_ARTIFACTS", ROOT / "test-artifacts"))

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here: `apt-get install chromium` (.ci/run does)")

ALL = {"v7": {}, "labelbox": {}, "ango": {}, "labelstudio": {}}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def open_page(browser, base: str, width: int = 1280):
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(base + "/")
    page.wait_for_function("window.playground.info !== null")
    return page, errors


def runs(page) -> int:
    return page.evaluate("window.playground.runs")


def after_run(page, before: int) -> dict:
    page.wait_for_function(f"window.playground.runs > {before} || window.playground.error !== null")
    return page.evaluate("({platform: playground.platform, shapes: playground.drawnShapes, drawn: playground.drawn,"
                         " losses: playground.losses, answer: playground.answer, error: playground.error})")


def test_upload_switch_platform_and_see_what_each_keeps(browser, serve_app, make_manifest, tmp_path):
    manifest = make_manifest(model={"factory": "tests/shapes_model.py:AllShapes"}, platforms=ALL,
                             geometry={"simplify_tolerance": 0})
    base = serve_app(create_app(manifest))
    image = tmp_path / "scene.png"
    image.write_bytes(encode_image(np.full((128, 160, 3), 90, np.uint8)))
    page, errors = open_page(browser, base)
    assert page.locator("#model-name").inner_text() == "test-model 0.1.0"
    assert page.locator(".chip").count() == len(build_model(manifest, discover()).spec.classes)
    ARTIFACTS.mkdir(exist_ok=True)

    seen = {}
    for platform in ("v7", "labelbox", "ango", "labelstudio"):
        before = runs(page)
        page.locator(f'[data-platform="{platform}"]').click()  # with no input yet, this only chooses
        if platform == "v7":
            page.set_input_files("#file", str(image))
        seen[platform] = state = after_run(page, before)
        assert state["error"] is None and state["platform"] == platform
        page.screenshot(path=str(ARTIFACTS / f"playground-{platform}.png"), full_page=True)

    kinds = {platform: {p["type"] for p in state["drawn"]} for platform, state in seen.items()}
    # V7 keeps points, lines, skeletons and cuboids; Foundry has no form for them, and says so
    assert {"point", "line", "skeleton", "cuboid"} <= kinds["v7"]
    assert not {"point", "line", "skeleton", "cuboid"} & kinds["labelbox"]
    assert "class 'point' (point): dropped: Foundry documents no answer form for it" in seen["labelbox"]["losses"]
    assert seen["v7"]["shapes"] > seen["labelbox"]["shapes"] > 0
    # Ango has no ellipse nor vector: the list under the picture says what became of them
    assert any("(ellipse): sent as polygon" in line for line in seen["ango"]["losses"])
    # ... and that it keeps no confidence: what Ango receives, its plugin runs included
    assert "confidence: dropped: Ango's answer carries no confidence" in seen["ango"]["losses"]
    assert not [p for p in seen["ango"]["drawn"] if p["label"] == "vector"]
    # Label Studio: its regions, in the tools of the config `bridge labelstudio-config` prints
    types = {region["type"] for region in seen["labelstudio"]["answer"]["result"]}
    assert {"rectanglelabels", "polygonlabels", "brushlabels", "keypointlabels", "ellipselabels"} <= types
    assert {"line", "cuboid"}.isdisjoint(kinds["labelstudio"]) and "ellipse" in kinds["labelstudio"]
    # the answer shown is the platform's own
    assert seen["v7"]["answer"]["status"] == "succeeded" and "objects" in seen["ango"]["answer"]
    assert errors == []


def test_a_parameter_changes_the_answer(browser, serve_app):
    from bridge.core.manifest import load_manifest

    base = serve_app(create_app(load_manifest(ROOT / "manifests" / "default.yaml")))
    page, errors = open_page(browser, base, width=390)  # a phone-width window
    before = runs(page)
    page.get_by_role("button", name="astronaut.jpg").click()
    found = after_run(page, before)
    assert [p["label"] for p in found["drawn"]].count("face") == 1 and found["shapes"] >= 1
    before = runs(page)
    page.locator('input[name="threshold"]').fill("0.99")
    page.locator('input[name="threshold"]').dispatch_event("change")
    assert after_run(page, before)["drawn"] == []
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")  # no sideways scroll
    page.screenshot(path=str(ARTIFACTS / "playground-phone.png"), full_page=True)
    assert errors == []


def test_a_text_model_highlights_its_spans(browser, serve_app):
    from bridge.core.manifest import load_manifest

    base = serve_app(create_app(load_manifest(ROOT / "manifests" / "text_entities.yaml")))
    page, errors = open_page(browser, base)
    page.locator("#text").fill("Mail tom@example.com by 3 May 2025.")
    before = runs(page)
    page.get_by_role("button", name="Run").click()
    found = after_run(page, before)
    assert found["shapes"] == 2 and page.locator("#text-view mark").count() == 2
    assert page.locator("#text-view mark").first.inner_text().startswith("tom@example.com")
    # no blank picture above the text: the canvas is hidden for a text model, and takes no room
    assert page.locator("#canvas").is_hidden()
    assert page.evaluate("document.getElementById('canvas').getBoundingClientRect().height") == 0
    assert errors == []


def test_the_playground_is_off_when_asked_and_refuses_unknown_platforms(serve_app, make_manifest):
    manifest = make_manifest(model={"factory": "examples/blur.py:BlurDetector"})
    off = serve_app(create_app(manifest, playground=False))
    for path in ("/", "/playground/info"):
        answer = httpx.get(off + path)
        assert answer.status_code == 404
        assert answer.json()["error"] == (f"GET {path}: the playground is off: `bridge serve` serves it only on a "
                                          "loopback --host (it answers without credentials); --playground "
                                          "turns it on")
    assert "no such route" in httpx.get(off + "/nowhere").json()["error"]
    base = serve_app(create_app(manifest))
    refused = httpx.post(f"{base}/playground/run", json={"platform": "labelbox", "image": "x"})
    assert refused.status_code == 422 and refused.json() == {"error": "platform 'labelbox' is not served; served: v7"}


def test_a_box_dragged_on_the_image_prompts_a_segmenter(browser, serve_app):
    """GrabCut takes prompts: the page asks for one, a box dragged on the image is sent in image pixels, and
    the outline comes back inside it."""
    from bridge.core.manifest import load_manifest

    base = serve_app(create_app(load_manifest(ROOT / "manifests" / "grabcut.yaml")))
    page, errors = open_page(browser, base)
    assert page.locator("#prompt-input").is_visible()
    page.get_by_role("button", name="astronaut.jpg").click()
    page.wait_for_function("window.playground.image !== null")
    assert runs(page) == 0  # nothing to segment until the user points at something
    canvas = page.locator("#canvas").bounding_box()
    size = page.evaluate("document.getElementById('canvas').width")
    to_screen = canvas["width"] / size
    box = (120, 35, 215, 135)  # image pixels, around the astronaut's face
    page.mouse.move(canvas["x"] + box[0] * to_screen, canvas["y"] + box[1] * to_screen)
    page.mouse.down()
    page.mouse.move(canvas["x"] + box[2] * to_screen, canvas["y"] + box[3] * to_screen, steps=5)
    page.mouse.up()
    found = after_run(page, 0)
    assert found["error"] is None
    sent = page.evaluate("window.playground.prompts.box")
    assert sent == pytest.approx([box[0], box[1], box[2] - box[0], box[3] - box[1]], abs=2)
    (outline,) = [p for p in found["drawn"] if p["type"] == "polygon"]
    points = np.array([xy for part in outline["parts"] for ring in part for xy in ring])
    assert (points[:, 0] >= box[0] - 3).all() and (points[:, 0] <= box[2] + 3).all()
    assert (points[:, 1] >= box[1] - 3).all() and (points[:, 1] <= box[3] + 3).all()
    page.screenshot(path=str(ARTIFACTS / "playground-prompt.png"), full_page=True)
    assert errors == []
