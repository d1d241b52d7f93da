"""The project's manifests and example models through Labelbox Foundry, on real images and real texts."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import yaml
from pycocotools import mask as coco_mask
from scipy import ndimage

from bridge.commands.main import main
from bridge.core.manifest import load_manifest
from bridge.serving.app import create_app
from tests.conftest import ROOT, b64, encode_image
from tests.test_labelbox import documented, only_documented

SECRET = "example-secret"
AUTH = {"authorization": f"Bearer {SECRET}"}


@pytest.fixture
def serve_manifest(serve_app, monkeypatch):
    """Serve one of the project's own manifests, its secret from the environment as the README says."""
    monkeypatch.setenv("LABELBOX_SECRET", SECRET)

    def serve(name: str) -> str:
        return serve_app(create_app(load_manifest(ROOT / "manifests" / name))) + "/labelbox/infer"

    return serve


def ask_image(url: str, image: np.ndarray, **params) -> dict:
    body = {"prompt": [{"role": "user", "parts": [{"text": "label this image"},
                                                  {"image": b64(encode_image(image))}]}], **params}
    response = httpx.post(url, json=body, headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    return documented(response.json())


def ask_text(url: str, row: str, **params) -> dict:
    body = {"prompt": [{"role": "system", "parts": [{"text": "You tag text."}]},
                       {"role": "user", "parts": [{"text": "Tag this data row."}, {"text": row}]}], **params}
    response = httpx.post(url, json=body, headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    return documented(response.json())


# --- images ---------------------------------------------------------------------------------------------------


def test_coin_segmenter_gives_one_mask_per_coin_with_holes(serve_manifest):
    from skimage import data

    coins = data.coins()  # 303 x 384 grayscale, 24 coins
    answer = ask_image(serve_manifest("coins.yaml"), coins)
    assert set(answer) == {"Coin"}
    masks = [coco_mask.decode({"size": m["size"], "counts": m["counts"].encode()}).astype(bool)
             for m in answer["Coin"]["masks"]]
    assert 20 <= len(masks) <= 30
    assert all(m.shape == coins.shape for m in masks)
    assert not np.any(np.sum(masks, axis=0) > 1)  # instances do not overlap
    for mask in masks:
        rows, cols = np.nonzero(mask)
        height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert 300 < mask.sum() < 4000 and 0.6 < height / width < 1.6  # coin-sized and round-ish
        assert coins[mask].mean() > np.median(coins)  # coins are brighter than the background
    holed = [m for m in masks if (ndimage.binary_fill_holes(m) & ~m).any()]
    assert holed  # dark details inside a coin stay holes in its mask
    fewer = ask_image(serve_manifest("coins.yaml"), coins, min_area=2000)
    assert 0 < len(fewer["Coin"]["masks"]) < len(masks)


def test_face_detector_gives_the_astronauts_face_as_a_box(serve_manifest, astronaut):
    answer = ask_image(serve_manifest("default.yaml"), astronaut)
    assert set(answer) == {"Face"}  # eyes are points: Labelbox Foundry has no form for them
    ((left, top, width, height),) = answer["Face"]["boxes"]
    # Eileen Collins' face in skimage's astronaut() spans about x 170-280, y 60-170.
    assert 150 < left < 200 and 40 < top < 90 and 70 < width < 140 and 70 < height < 140
    assert 0 < answer["Face"]["scores"][0] <= 1
    assert ask_image(serve_manifest("default.yaml"), astronaut, threshold=0.99) == {}


# --- texts ----------------------------------------------------------------------------------------------------

ROW = ("Hi team, please email jane.doe@example.com or call +1 (555) 123-4567 before 2024-03-15. "
       "The invoice of $1,250.00 is at https://billing.example.org/inv/42. We met on 3 March 2025 and "
       "agreed on 900 EUR; my office line is 020 7946 0958.")


def test_entity_tagger_finds_personal_data_with_end_exclusive_offsets(serve_manifest):
    url = serve_manifest("text_entities.yaml")
    answer = ask_text(url, ROW)
    for entities in answer.values():
        for entity in entities:
            assert ROW[entity["start"]:entity["end"]] == entity["text"]
    texts = {name: [e["text"] for e in entities] for name, entities in answer.items()}
    assert texts == {
        "email": ["jane.doe@example.com"],
        "phone": ["+1 (555) 123-4567", "020 7946 0958"],
        "date": ["2024-03-15", "3 March 2025"],
        "money": ["$1,250.00", "900 EUR"],
        "url": ["https://billing.example.org/inv/42"],
    }
    assert set(ask_text(url, ROW, kinds=["email", "url"])) == {"email", "url"}
    assert ask_text(url, "Nothing personal here, just 42 apples.") == {}
    response = httpx.post(url, json={"prompt": [{"role": "user", "parts": [{"text": ROW}]}], "kinds": ["names"]},
                          headers=AUTH)
    assert response.status_code == 422 and "invalid parameter kinds" in response.json()["error"]


def test_topic_classifier_answers_radio_checklist_and_free_text(serve_manifest):
    url = serve_manifest("text_topics.yaml")
    sport = ask_text(url, "The striker scored a late goal and the team won the league match in extra time.")
    assert sport["language"] == "english" and sport["topics"] == ["sports"]
    assert sport["keywords"] == "striker, goal, team, league, match"
    markets = ask_text(url, "Investors sold shares as the stock market fell, while the bank said its cloud "
                            "software and AI chips drove revenue and profit in the data centre business.")
    assert markets["topics"] == ["finance", "technology"]  # in the order of the options
    assert ask_text(url, "Le gouvernement a présenté une nouvelle loi sur les élections et le vote des jeunes "
                         "dans les villes.")["language"] == "french"
    assert ask_text(url, "Der Patient wird seit Montag im Krankenhaus behandelt und ist mit der Therapie "
                         "zufrieden.")["language"] == "german"
    assert ask_text(url, "El equipo ganó el partido con un gol en los últimos minutos del "
                         "encuentro.")["language"] == "spanish"
    strict = ask_text(url, "A late goal won the match.", min_hits=3)
    assert "topics" not in strict and strict["keywords"] == "goal, match"


def test_text_models_refuse_an_image(serve_manifest, astronaut):
    body = {"prompt": [{"role": "user", "parts": [{"image": b64(encode_image(astronaut[:64, :64]))}]}]}
    response = httpx.post(serve_manifest("text_entities.yaml"), json=body, headers=AUTH)
    assert response.status_code == 422 and "this model reads text" in response.json()["error"]


# --- model.yaml of each manifest ------------------------------------------------------------------------------


@pytest.mark.parametrize("name, media_type, tools, classifications", [
    ("default.yaml", "IMAGE", {"Face": "rectangle"}, {}),
    ("coins.yaml", "IMAGE", {"Coin": "raster-segmentation"}, {}),
    ("text_entities.yaml", "TEXT", {k: "named-entity" for k in ("email", "url", "phone", "date", "money")}, {}),
    ("text_topics.yaml", "TEXT", {}, {"language": "radio", "topics": "checklist", "keywords": "text"}),
])
def test_model_yaml_of_each_manifest(monkeypatch, capsys, name, media_type, tools, classifications):
    monkeypatch.setenv("LABELBOX_SECRET", SECRET)
    assert main(["labelbox-manifest", str(ROOT / "manifests" / name),
                 "--endpoint", "https://models.example.com/labelbox/infer"]) == 0
    out, err = capsys.readouterr()
    document = yaml.safe_load(out)
    only_documented(document)
    manifest = load_manifest(ROOT / "manifests" / name)
    assert document["name"] == manifest.name and document["secrets"] == SECRET
    assert document["inference_params_json_schema"]["properties"] == manifest.params["properties"]
    assert document["allowed_asset_types"] == [media_type.lower()]
    ontology = document["ontology"]
    assert ontology["media_type"] == media_type
    assert {t["name"]: t["tool"] for t in ontology["tools"]} == tools
    assert {c["name"]: c["type"] for c in ontology["classifications"]} == classifications
    assert ("class 'eye' (point): dropped: Foundry documents no answer form for it" in err) == (name == "default.yaml")
