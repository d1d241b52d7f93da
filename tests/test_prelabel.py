"""`bridge prelabel` end to end: real images through the real command, each platform's files read back by
that platform's own code (darwin-py's importer, the labelbox SDK's NDJSON classes, imerit-ango's models and
`SDK.import_labels` against the loopback stand-in of Ango's API), resume after SIGKILL, failures per item."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from darwin.importer.formats.darwin import parse_path
from imerit_ango.models.annotate import Answer
from imerit_ango.sdk import SDK
from labelbox.data.serialization.ndjson.label import NDLabel
from PIL import Image

from bridge.commands.journal import Entry, Journal
from bridge.commands.main import main
from bridge.commands.prelabel import Progress
from bridge.core.conversions import missing_rows
from bridge.core.loading import build_model
from bridge.platforms.export import ExportSetup
from bridge.platforms.registry import discover
from tests.conftest import ROOT, encode_image
from tests.shapes_model import donut_mask
from tests.test_ango import FakeAngoApi

PLATFORMS = ("v7", "labelbox", "ango", "cvat")


def write_manifest(tmp_path: Path, factory: str = "tests/shapes_model.py:AllShapes", **keys: Any) -> Path:
    path = tmp_path / "model.yaml"
    keys.setdefault("params", {"type": "object", "additionalProperties": True})  # `sleep`, `fail`: ad hoc
    path.write_text(yaml.safe_dump({"name": "shapes", "model": {"factory": str(ROOT / factory)},
                                    "limits": {"allow_private_urls": True}, **keys}), encoding="utf-8")
    return path


def prelabel(capsys: pytest.CaptureFixture, *argv: Any) -> tuple[int, str]:
    code = main(["prelabel", *map(str, argv)])
    return code, capsys.readouterr().out


@pytest.fixture
def images(tmp_path: Path, astronaut: np.ndarray) -> Path:
    from skimage import data

    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    (folder / "astronaut.jpg").write_bytes(encode_image(astronaut, "JPEG"))
    (folder / "sub" / "coins.png").write_bytes(encode_image(data.coins()))
    return folder


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- what each platform gets ----------------------------------------------------------------------------------


def test_v7_files_read_by_darwin_py_hold_what_the_model_predicted(tmp_path, images, capsys):
    code, _ = prelabel(capsys, write_manifest(tmp_path), images, "--to", "v7", "--out", tmp_path / "out")
    assert code == 0
    files = sorted((tmp_path / "out" / "v7").glob("*.json"))
    assert [f.name for f in files] == ["astronaut.jpg.json", "sub%2Fcoins.png.json"]
    for path, (height, width) in zip(files, [(512, 512), (303, 384)]):
        parsed = parse_path(path)
        assert (parsed.image_width, parsed.image_height) == (width, height)
        by_class = {a.annotation_class.name: a for a in parsed.annotations}
        assert by_class["box"].annotation_class.annotation_type == "bounding_box"
        assert by_class["box"].data == {"x": 4.0, "y": 6.0, "w": width / 4, "h": height / 4}
        subs = {s.annotation_type: s.data for s in by_class["box"].subs}
        assert subs["attributes"] == ["occluded"] and subs["text"] == "a box"
        assert subs["inference"]["confidence"] == 0.9
        donut = by_class["donut"].data["paths"]
        assert len(donut) == 2  # exterior and hole
        assert by_class["person"].data["nodes"][1]["occluded"] is True
        assert {"weather: sunny", "objects: car", "objects: sky", "caption", "sharp"} <= set(by_class)
        assert "vector" not in by_class and "name" not in by_class
        # the mask class: a `mask` annotation painted by the raster layer, exactly the model's mask
        mask, layer = by_class["blob"], by_class["__raster_layer__"]
        assert mask.annotation_class.annotation_type == "mask"
        assert layer.annotation_class.annotation_type == "raster_layer"
        values, counts = layer.data["dense_rle"][0::2], layer.data["dense_rle"][1::2]
        assert layer.data["total_pixels"] == width * height == sum(counts)
        labels = np.repeat(values, counts).reshape(height, width)
        painted = labels == layer.data["mask_annotation_ids_mapping"][mask.id]
        assert np.array_equal(painted, donut_mask(height, width))
    assert parse_path(files[1]).remote_path == "/sub"


def test_overlapping_masks_the_more_confident_keeps_the_pixel(tmp_path, capsys):
    from adapters.v7 import V7Section
    from adapters.v7.darwin_json import darwin_file
    from bridge import ClassSpec, Mask, ModelSpec, Prediction
    from bridge.core.service import Result

    spec = ModelSpec(classes=[ClassSpec(name="blob", kind="mask")])
    low, high, hidden = (np.zeros((4, 6), bool) for _ in range(3))
    low[:, :4], high[:, 2:], hidden[0, 3] = True, True, True
    result = Result([Prediction("blob", Mask(low), 0.4), Prediction("blob", Mask(high), 0.9),
                     Prediction("blob", Mask(hidden), 0.1)], size=(4, 6))
    path = tmp_path / "item.json"
    path.write_text(json.dumps(darwin_file("item.png", result, spec, V7Section(), "m")))
    parsed = parse_path(path)
    masks = [a for a in parsed.annotations if a.annotation_class.annotation_type == "mask"]
    layer = next(a for a in parsed.annotations if a.annotation_class.annotation_type == "raster_layer")
    assert len(masks) == 2  # the fully covered one is not written
    labels = np.repeat(layer.data["dense_rle"][0::2], layer.data["dense_rle"][1::2]).reshape(4, 6)
    by_confidence = {a.subs[0].data["confidence"]: labels == layer.data["mask_annotation_ids_mapping"][a.id]
                     for a in masks}
    assert np.array_equal(by_confidence[0.9], high)
    assert np.array_equal(by_confidence[0.4], low & ~high)


def test_labelbox_lines_load_with_the_sdks_ndjson_classes(tmp_path, images, capsys):
    code, _ = prelabel(capsys, write_manifest(tmp_path), images, "--to", "labelbox", "--out", tmp_path / "out")
    assert code == 0
    found: dict[tuple[str, str], Any] = {}
    for line in lines(tmp_path / "out" / "labelbox" / "predictions.ndjson"):
        annotation = NDLabel.model_validate({"annotations": line}).annotations
        key = (line["dataRow"]["globalKey"], line["name"])
        assert key not in found
        found[key] = (type(annotation).__name__, annotation.to_common(), annotation.confidence)
    kinds = {name: kind for (_, name), (kind, _, _) in found.items()}
    assert kinds == {"box": "NDRectangle", "rotated": "NDPolygon", "donut": "NDPolygon", "blob": "NDMask",
                     "point": "NDPoint", "line": "NDLine", "ellipse": "NDPolygon", "weather": "NDRadio",
                     "objects": "NDChecklist", "caption": "NDText", "tags": "NDChecklist"}
    _, box, confidence = found[("sub/coins.png", "box")]
    assert (box.start.x, box.start.y, box.end.x, box.end.y, confidence) == (4, 6, 4 + 384 / 4, 6 + 303 / 4, 0.9)
    _, mask, _ = found[("sub/coins.png", "blob")]
    assert np.array_equal(mask.mask.value[:, :, 0] > 0, donut_mask(303, 384))
    assert found[("astronaut.jpg", "weather")][1].answer.name == "sunny"
    assert [a.name for a in found[("astronaut.jpg", "objects")][1].answer] == ["car", "sky"]
    assert found[("astronaut.jpg", "caption")][1].answer == "an astronaut"
    assert [a.name for a in found[("astronaut.jpg", "tags")][1].answer] == ["sharp"]
    assert found[("astronaut.jpg", "point")][1].x == pytest.approx(512 / 3)


def test_ango_payload_by_schema_id_goes_through_the_sdk(tmp_path, images, capsys):
    mapping = tmp_path / "categories.json"
    mapping.write_text(json.dumps([{"schemaId": "s-box", "modelClass": "box"},
                                   {"schemaId": "s-blob", "modelClass": "blob"},
                                   {"schemaId": "s-weather", "modelClass": "weather"}]))
    code, out = prelabel(capsys, write_manifest(tmp_path), images, "--to", "ango", "--mapping",
                         f"ango={mapping}", "--out", tmp_path / "out")
    assert code == 0
    (payload,) = sorted((tmp_path / "out" / "ango").glob("labels-*.json"))
    labels = json.loads(payload.read_text())
    assert [label["externalId"] for label in labels] == ["astronaut.jpg", "sub/coins.png"]
    for label in labels:
        assert {**Answer(label["objects"], label["classifications"]).toDict(), "externalId": label["externalId"]} \
            == {**label, "relations": []}
        assert sorted(o["schemaId"] for o in label["objects"]) == ["s-blob", "s-box"]
        assert label["classifications"] == [{"schemaId": "s-weather", "answer": "sunny"}]
        blob = next(o for o in label["objects"] if o["schemaId"] == "s-blob")
        assert len(blob["segmentation"]["zones"]) == 2  # ring with its hole, and the square
    api = FakeAngoApi()
    try:
        SDK(api_key="key", host=api.base).import_labels("project-1", labels)
        (call,) = api.calls_to("/v2/import/labels")
        assert call.body == {"project": "project-1", "jsonContent": labels} and call.apikey == "key"
    finally:
        api.close()


def test_ango_payload_without_mapping_carries_titles(tmp_path, images, capsys):
    manifest = write_manifest(tmp_path, platforms={"ango": {"rename": {"box": "Box"}}})
    code, _ = prelabel(capsys, manifest, images, "--to", "ango", "--out", tmp_path / "out")
    assert code == 0
    labels = json.loads((tmp_path / "out" / "ango" / "labels-00001.json").read_text())
    titles = {o["title"] for o in labels[0]["objects"]}
    assert {"Box", "donut", "blob", "point", "line"} <= titles and "vector" not in titles


def test_text_model_entities_on_labelbox_and_ango(tmp_path, capsys):
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.txt").write_text("Tom likes sun")
    (texts / "b.txt").write_text("rain, no one")
    manifest = write_manifest(tmp_path, "tests/shapes_model.py:TextShapes")
    code, _ = prelabel(capsys, manifest, texts, "--to", "labelbox,ango", "--out", tmp_path / "out")
    assert code == 0
    entities = [NDLabel.model_validate({"annotations": line}).annotations.to_common()
                for line in lines(tmp_path / "out" / "labelbox" / "predictions.ndjson") if "location" in line]
    assert [(e.start, e.end) for e in entities] == [(0, 2)]  # "Tom": end inclusive in Labelbox's form
    labels = json.loads((tmp_path / "out" / "ango" / "labels-00001.json").read_text())
    assert labels[0]["objects"] == [{"title": "name", "ner": {"start": 0, "end": 3}}]
    assert labels[1]["classifications"] == [{"title": "weather", "answer": "rainy"}]


def test_every_exporter_declares_every_conversion(tmp_path):
    manifest = write_manifest(tmp_path)
    from bridge.core.manifest import load_manifest

    loaded = load_manifest(manifest)
    adapters = discover()
    for name in PLATFORMS:
        adapter = adapters[name]
        exporter = adapter.exporter(loaded.section(name, adapter.section), ExportSetup(loaded, build_model(loaded, discover()).spec))
        assert missing_rows(exporter.conversions) == [], name


# --- inputs ---------------------------------------------------------------------------------------------------


def test_csv_gives_urls_and_identities(tmp_path, media_server, astronaut, capsys):
    small = encode_image(astronaut[::4, ::4].copy())
    table = tmp_path / "items.csv"
    table.write_text("global_key,url\n" + "".join(f"row-{i},{media_server.add(f'{i}.png', small)}\n"
                                                   for i in range(3)))
    code, _ = prelabel(capsys, write_manifest(tmp_path), table, "--to", "labelbox,v7", "--out", tmp_path / "out")
    assert code == 0
    keys = {line["dataRow"]["globalKey"] for line in lines(tmp_path / "out" / "labelbox" / "predictions.ndjson")}
    assert keys == {"row-0", "row-1", "row-2"}
    assert parse_path(tmp_path / "out" / "v7" / "row-1.json").filename == "row-1"


def test_a_list_of_paths_and_a_repeated_identity(tmp_path, images, capsys):
    listing = tmp_path / "list.txt"
    listing.write_text("# my images\nimages/astronaut.jpg\n\nimages/sub/coins.png\n")
    code, _ = prelabel(capsys, write_manifest(tmp_path), listing, "--to", "v7", "--out", tmp_path / "out")
    assert code == 0
    assert {p.name for p in (tmp_path / "out" / "v7").glob("*.json")} == {"astronaut.jpg.json", "coins.png.json"}
    listing.write_text("images/astronaut.jpg\nimages/astronaut.jpg\n")
    code = main(["prelabel", str(write_manifest(tmp_path)), str(listing), "--to", "v7", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "astronaut.jpg" in capsys.readouterr().err


# --- failures, resume, summary --------------------------------------------------------------------------------


def test_a_bad_item_is_recorded_and_the_run_goes_on_then_retried(tmp_path, images, capsys, astronaut):
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    code, text = prelabel(capsys, write_manifest(tmp_path), images, "--to", "v7,labelbox", "--out", out)
    assert code == 1
    assert "failed notes.txt: image is not an image" in text
    report = json.loads((out / "summary.json").read_text())
    assert (report["done"], report["failed"]) == (2, 1)
    assert report["predictions"]["box"] == 2
    assert any("vector" in line and "dropped" in line for line in report["conversions"]["v7"])
    assert report["files"]["labelbox"] == [str(out / "labelbox" / n) for n in ("predictions.ndjson", "mal.ndjson")]

    code, text = prelabel(capsys, write_manifest(tmp_path), images, "--to", "v7,labelbox", "--out", out)
    assert code == 1 and "0 done, 0 failed, 3 skipped" in text  # failures are not redone unless asked

    (images / "notes.txt").write_bytes(encode_image(astronaut[::8, ::8].copy()))
    code, text = prelabel(capsys, write_manifest(tmp_path), images, "--to", "v7,labelbox", "--out", out,
                          "--retry-failed")
    assert code == 0 and "3 items: 3 done, 0 failed" in text
    boxes = [line for line in lines(out / "labelbox" / "predictions.ndjson") if line["name"] == "box"]
    assert sorted(line["dataRow"]["globalKey"] for line in boxes) == ["astronaut.jpg", "notes.txt", "sub/coins.png"]


def test_a_new_platform_reruns_items_done_for_others_only(tmp_path, images, capsys):
    out = tmp_path / "out"
    prelabel(capsys, write_manifest(tmp_path), images, "--to", "v7", "--out", out)
    code, text = prelabel(capsys, write_manifest(tmp_path), images, "--to", "v7,ango", "--out", out)
    assert code == 0 and "this run: 2 done" in text
    code, text = prelabel(capsys, write_manifest(tmp_path), images, "--to", "ango", "--out", out)
    assert "this run: 0 done, 0 failed, 2 skipped" in text


def test_runs_interrupted_and_killed_midway_resume_with_no_item_lost_or_repeated(tmp_path, astronaut):
    folder = tmp_path / "images"
    folder.mkdir()
    small = encode_image(astronaut[::8, ::8].copy())
    names = [f"img-{i:02d}.png" for i in range(24)]
    for name in names:
        (folder / name).write_bytes(small)
    manifest = write_manifest(tmp_path, limits={"concurrency": 2})
    out = tmp_path / "out"
    journal = out / "journal.jsonl"
    command = [sys.executable, "-m", "bridge", "prelabel", str(manifest), str(folder), "--to",
               "v7,labelbox,ango", "--out", str(out), "--params", '{"sleep": 0.1}']  # the same params each time

    def stop_after(journaled: int, how: signal.Signals) -> subprocess.Popen:
        slow = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + 60
        while not (journal.exists() and len(journal.read_text().splitlines()) >= journaled):
            assert slow.poll() is None and time.monotonic() < deadline, "the run ended before it could be stopped"
            time.sleep(0.02)
        os.kill(slow.pid, how)
        slow.wait(timeout=30)
        return slow

    interrupted = stop_after(4, signal.SIGINT)  # Ctrl-C: the summary says so, the files match the journal
    assert interrupted.returncode == 130
    assert "interrupted" in interrupted.stdout.read()
    after_ctrl_c = len(journal.read_text().splitlines())
    boxes = [line for line in lines(out / "labelbox" / "predictions.ndjson") if line["name"] == "box"]
    assert len(boxes) == after_ctrl_c

    stop_after(after_ctrl_c + 4, signal.SIGKILL)
    killed_at = len(journal.read_text().splitlines())
    assert killed_at < len(names)

    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert f"{len(names)} items: {len(names)} done, 0 failed" in finished.stdout
    assert f"{len(names) - killed_at} done" in finished.stdout.splitlines()[0]
    assert "prelabel: " in finished.stderr and "items/s" in finished.stderr  # plain progress lines off a tty
    done = [line["item"] for line in lines(journal) if line["ok"]]
    assert sorted(done) == names  # each item journaled once: none redone, none lost
    assert sorted(p.name for p in (out / "v7").glob("*.json")) == [f"{n}.json" for n in names]
    boxes = [line["dataRow"]["globalKey"] for line in lines(out / "labelbox" / "predictions.ndjson")
             if line["name"] == "box"]
    assert sorted(boxes) == names
    labels = json.loads((out / "ango" / "labels-00001.json").read_text())
    assert sorted(label["externalId"] for label in labels) == names


def test_the_journal_survives_a_line_cut_short(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_text('{"item": "a", "ok": true, "platforms": ["v7"]}\n{"item": "b", "ok": tr')
    journal = Journal(path)
    assert set(journal.entries) == {"a"}
    journal.record(Entry("b", True, ("v7",)))
    journal.close()
    assert set(Journal(path).entries) == {"a", "b"}


def test_progress_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress(4, stream)
    progress.update(2, 1)
    progress.close()
    shown = stream.getvalue()
    assert shown.startswith("\r[") and "3/4 items, 1 failed" in shown and "items/s" in shown and "ETA" in shown


def test_unknown_platform_is_a_clear_error(tmp_path, images, capsys):
    code = main(["prelabel", str(write_manifest(tmp_path)), str(images), "--to", "nuclio", "--out", str(tmp_path)])
    assert code == 2
    assert "no platform named nuclio" in capsys.readouterr().err


def test_png_mask_values(tmp_path):
    """Labelbox's reader refuses a mask PNG with values above 1: ours are 0 and 1."""
    from adapters.labelbox.ndjson import _png

    mask = donut_mask(40, 50)
    decoded = np.array(Image.open(io.BytesIO(base64.b64decode(_png(mask)))))
    assert decoded.max() == 1 and np.array_equal(decoded > 0, mask)


# --- real folders: any file name, one-line errors, files checked, what made them --------------------------------


def small_png(astronaut: np.ndarray) -> bytes:
    return encode_image(astronaut[::16, ::16].copy())


def test_any_file_name_that_exists_on_disk_is_written_and_its_identity_kept_exact(tmp_path, astronaut, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    names = ["宇宙飛行士の写真を撮影した日の記録と思い出の一枚.png",  # 28 Japanese characters, and more
             "あ" * 83 + ".png",  # 253 bytes: as long as a name may be
             "100% done [1].png", "-dash.png", ".hidden-not-read.png"]
    for name in names:
        (folder / name).write_bytes(small_png(astronaut))
    (folder / "bad\x1b[2J\nname.txt").write_text("not an image")
    out = tmp_path / "out"
    code, text = prelabel(capsys, write_manifest(tmp_path), folder, "--to", "v7,labelbox,ango", "--out", out)
    assert code == 1, text
    kept = sorted(names[:4])
    assert sorted(line["dataRow"]["globalKey"] for line in lines(out / "labelbox" / "predictions.ndjson")
                  if line["name"] == "box") == kept
    assert sorted(label["externalId"] for label in json.loads((out / "ango" / "labels-00001.json").read_text())) == kept
    assert sorted(json.loads(p.read_text())["item"]["name"] for p in (out / "v7").glob("*.json")) == kept
    assert all(len(p.name.encode()) <= 255 for p in out.rglob("*"))
    # the summary shows the bad name escaped, and says that identities are exported as they are
    assert "\x1b" not in text and "failed bad\\x1b[2J\\nname.txt: image is not an image" in text
    assert "1 identity holds control characters" in text and "exactly as they are" in text


def one_line_error(capsys: pytest.CaptureFixture, *argv: Any) -> str:
    code = main(["prelabel", *map(str, argv)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("bridge prelabel: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_mistakes_around_a_run_are_one_line_errors(tmp_path, images, capsys):
    manifest = write_manifest(tmp_path)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("id,path\ncafé,images/astronaut.jpg\n".encode("latin-1"))
    assert "latin.csv: not UTF-8" in one_line_error(capsys, manifest, latin, "--to", "v7", "--out", tmp_path / "o")
    listing = tmp_path / "list.txt"
    listing.write_bytes("images/café.jpg\n".encode("latin-1"))
    assert "list.txt: not UTF-8" in one_line_error(capsys, manifest, listing, "--to", "v7", "--out", tmp_path / "o")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out in (a_file, a_file / "under", Path("/proc/bridge-prelabel-out")):
        assert f"--out {out}: " in one_line_error(capsys, manifest, images, "--to", "v7", "--out", out)
    inside = one_line_error(capsys, manifest, images, "--to", "v7", "--out", images / "labels")
    assert "is inside the input folder" in inside


def test_a_journal_bridge_did_not_write_stops_the_run_with_one_line(tmp_path, images, capsys):
    manifest, out = write_manifest(tmp_path), tmp_path / "out"
    assert prelabel(capsys, manifest, images, "--to", "v7", "--out", out)[0] == 0
    journal = out / "journal.jsonl"
    good = journal.read_bytes()
    for bad in (b'["not", "an", "entry"]\n', b'{"item": ["a"], "ok": true}\n', b'{"item": "caf\xe9", "ok": true}\n',
                b'{"item": "a", "ok": true, "classes": {"box": "many"}}\n'):
        journal.write_bytes(good + bad)
        err = one_line_error(capsys, manifest, images, "--to", "v7", "--out", out)
        assert "journal.jsonl, line 3" in err and "cannot resume" in err
    journal.write_bytes(good + b'{"item": "sub/coins.png", "ok": tr')  # cut short by a crash: not an error
    assert prelabel(capsys, manifest, images, "--to", "v7", "--out", out)[0] == 0


def test_a_csv_text_longer_than_csvs_default_field_limit(tmp_path, capsys):
    table = tmp_path / "texts.csv"
    table.write_text("id,text\nlong," + "Tom saw the sun. " * 12_000 + "\n", encoding="utf-8")
    code, text = prelabel(capsys, write_manifest(tmp_path, "tests/shapes_model.py:TextShapes"), table,
                          "--to", "labelbox", "--out", tmp_path / "out")
    assert code == 0, text


def test_deleted_outputs_are_made_again_not_trusted_to_the_journal(tmp_path, images, capsys):
    manifest, out = write_manifest(tmp_path), tmp_path / "out"
    assert prelabel(capsys, manifest, images, "--to", "v7,labelbox", "--out", out)[0] == 0
    shutil.rmtree(out / "labelbox")
    (out / "v7" / "astronaut.jpg.json").unlink()
    code, text = prelabel(capsys, manifest, images, "--to", "v7,labelbox", "--out", out)
    assert code == 0 and "this run: 2 done, 0 failed, 0 skipped" in text
    assert (out / "v7" / "astronaut.jpg.json").is_file()
    assert len([line for line in lines(out / "labelbox" / "predictions.ndjson") if line["name"] == "box"]) == 2
    assert "this run: 0 done, 0 failed, 2 skipped" in prelabel(capsys, manifest, images, "--to", "v7,labelbox",
                                                                "--out", out)[1]


def test_a_run_with_another_model_version_manifest_or_params_is_not_skipped(tmp_path, images, capsys):
    out = tmp_path / "out"
    model = tmp_path / "model.py"
    model.write_text((ROOT / "tests" / "shapes_model.py").read_text())
    first = write_manifest(tmp_path, f"{model}:AllShapes")
    assert prelabel(capsys, first, images, "--to", "v7", "--out", out)[0] == 0

    def manifest_with(**keys: Any) -> Path:
        folder = tmp_path / "-".join(keys)
        folder.mkdir()
        return write_manifest(folder, f"{model}:AllShapes", **keys)

    changes = {"params": [first, "--params", '{"only": ["box"]}'], "version": [manifest_with(version="0.2.0")],
               "min_confidence": [manifest_with(min_confidence=0.9)], "model file": [first]}
    for what, (manifest, *options) in changes.items():
        if what == "model file":
            model.write_text(model.read_text() + "# changed\n")
        argv = [manifest, images, "--to", "v7", "--out", out, *options]
        err = one_line_error(capsys, *argv)
        assert f"2 items in {out} were pre-labelled by shapes" in err and "--force" in err, (what, err)
        code, text = prelabel(capsys, *argv, "--force")
        assert code == 0 and "this run: 2 done" in text, (what, text)
        assert "this run: 0 done, 0 failed, 2 skipped" in prelabel(capsys, *argv)[1], what


def test_limit_runs_a_few_items_for_a_trial(tmp_path, images, capsys):
    manifest, out = write_manifest(tmp_path), tmp_path / "out"
    code, text = prelabel(capsys, manifest, images, "--to", "v7", "--out", out, "--limit", "1")
    assert code == 0 and "2 items: 1 done, 0 failed (this run: 1 done, 0 failed, 0 skipped" in text
    assert "1 left for a later run (--limit)" in text
    code, text = prelabel(capsys, manifest, images, "--to", "v7", "--out", out)
    assert code == 0 and "2 items: 2 done" in text and "this run: 1 done, 0 failed, 1 skipped" in text
