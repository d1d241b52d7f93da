"""Labelbox Foundry's custom-model contract, checked against any running endpoint (`bridge check URL
--platform labelbox`; the URL is the endpoint itself, as Labelbox is given it).

One request, `{"prompt": [{"role": "user", "parts": [{"image": <base64>}]}]}` (or a `text` part for a text
model: the `model.yaml`'s media type says which, else `--text` given means text), then each feature of the
answer in its form: boxes with one score in [0, 1] per box, inside the image; COCO RLE masks that decode to
the image's size; entity spans whose offsets (UTF-16 code units) lie in the text and whose `text` quotes
it; radio and free-text answers as strings, checklists as lists of strings. With `--model-yaml`, every
feature must be one the ontology names, answered in the form of its kind, with options it lists.
"""

from __future__ import annotations

from typing import Any

from adapters.labelbox.read import KIND_OF_FEATURE
from bridge.core.offsets import Utf16
from bridge.core.predictions import Mask
from bridge.platforms.probe import Probe, Problem, json_of, number, request

FORM = {"box": "{\"boxes\": [[left, top, width, height]], \"scores\": [...]}",
        "mask": "{\"masks\": [{\"size\": [h, w], \"counts\": ...}]}",
        "entity": "[{\"start\": ..., \"end\": ..., \"text\": ...}]", "radio": "an option string",
        "checklist": "a list of option strings", "text": "a string"}


def features(model_yaml: dict[str, Any] | None) -> dict[str, tuple[str, tuple[str, ...]]] | None:
    """Feature name -> (class kind, options) from a model.yaml's ontology; None without one."""
    if not isinstance(model_yaml, dict) or not isinstance(model_yaml.get("ontology"), dict):
        return None
    ontology = model_yaml["ontology"]
    found = {tool.get("name"): (KIND_OF_FEATURE.get(tool.get("tool"), tool.get("tool")), ())
             for tool in ontology.get("tools", [])}
    for entry in ontology.get("classifications", []):
        options = tuple(o.get("value", o.get("label")) for o in entry.get("options", []))
        found[entry.get("name")] = (KIND_OF_FEATURE.get(entry.get("type"), entry.get("type")), options)
    return found


def reads_text(probe: Probe) -> bool:
    if isinstance(probe.model_yaml, dict):
        media = (probe.model_yaml.get("ontology") or {}).get("media_type") or \
            (probe.model_yaml.get("allowed_asset_types") or ["image"])[0]
        return str(media).lower() == "text"
    return probe.text_given


def check(probe: Probe) -> list[Problem]:
    problems: list[Problem] = []
    where = probe.where("POST")
    named = features(probe.model_yaml)
    if probe.model_yaml is not None and named is None:
        problems.append(Problem("--model-yaml", "has no `ontology` of tools and classifications",
                                "give the model.yaml Labelbox holds for this model (bridge labelbox-manifest)"))
    part = {"text": probe.text} if reads_text(probe) else {"image": probe.image_base64}
    response = request(probe, "POST", "", problems, json={"prompt": [{"role": "user", "parts": [part]}]})
    if response is None:
        return problems
    answer = json_of(response, where, problems)
    if answer is None:
        return problems
    if response.status_code != 200:
        problems.append(Problem(where, f"answered {response.status_code}: {str(answer)[:200]}",
                                "answer 200 with the features found"))
        return problems
    if not isinstance(answer, dict):
        problems.append(Problem(f"{where} $", f"a {type(answer).__name__}, not an object keyed by feature name",
                                'answer {"<feature name>": <its answer>, ...}'))
        return problems
    for feature, value in answer.items():
        at = f"{where} $[{feature!r}]"
        kind, options = (named or {}).get(feature, (None, ()))
        if named is not None and kind is None:
            problems.append(Problem(at, f"the model.yaml names no feature {feature!r}",
                                    f"answer only its features ({', '.join(map(str, named))}), or add it to the "
                                    "ontology"))
        found = _form(probe, value, at, problems)
        if found is None:
            continue
        if kind is not None and found and found != kind and not (kind == "radio" and found == "text"):
            problems.append(Problem(at, f"answered as {found}, but the model.yaml makes it a {kind}",
                                    f"answer {feature!r} as {FORM.get(kind, kind)}"))
        chosen = [value] if isinstance(value, str) else value if found == "checklist" else []
        if options and kind in ("radio", "checklist"):
            for option in chosen:
                if option not in options:
                    problems.append(Problem(at, f"{option!r} is not one of its options {list(options)}",
                                            "answer one of the options the model.yaml lists"))
    return problems


def _form(probe: Probe, value: Any, at: str, problems: list[Problem]) -> str | None:
    """Which form `value` has (a class kind; "" for an empty list), checking it; None when it has none."""
    if isinstance(value, str):
        return "text"
    if value == []:
        return ""  # no spans, or no option chosen: either kind
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "checklist"
    if isinstance(value, list):
        for index, span in enumerate(value):
            _span(probe, span, f"{at}[{index}]", problems)
        return "entity"
    if isinstance(value, dict) and "boxes" in value:
        _boxes(probe, value, at, problems)
        return "box"
    if isinstance(value, dict) and "masks" in value:
        masks = value["masks"] if isinstance(value["masks"], list) else []
        for index, rle in enumerate(masks):
            _mask(probe, rle, f"{at}.masks[{index}]", problems)
        return "mask"
    problems.append(Problem(at, f"{str(value)[:80]} is no Foundry answer form",
                            "answer " + "; ".join(f"{kind}: {form}" for kind, form in FORM.items())))
    return None


def _boxes(probe: Probe, value: dict[str, Any], at: str, problems: list[Problem]) -> None:
    boxes, scores = value.get("boxes"), value.get("scores")
    if not isinstance(boxes, list) or not isinstance(scores, list) or len(boxes) != len(scores):
        problems.append(Problem(at, f"{_count(boxes)} boxes and {_count(scores)} scores",
                                "send one score per box, in the same order"))
    for index, box in enumerate(boxes if isinstance(boxes, list) else []):
        if not (isinstance(box, list) and len(box) == 4 and all(map(number, box)) and box[2] >= 0 and box[3] >= 0):
            problems.append(Problem(f"{at}.boxes[{index}]", f"{box!r:.80} is not [left, top, width, height]",
                                    "send four numbers, width and height not negative"))
        elif not (probe.inside(box[0], box[1]) and probe.inside(box[0] + box[2], box[1] + box[3])):
            height, width = probe.size
            problems.append(Problem(f"{at}.boxes[{index}]", f"{box} reaches outside the image of {width}x{height}",
                                    "clip boxes to the image (pixels, origin top-left)"))
    for index, score in enumerate(scores if isinstance(scores, list) else []):
        if not (number(score) and 0 <= score <= 1):
            problems.append(Problem(f"{at}.scores[{index}]", f"{score!r} is not a number in [0, 1]",
                                    "send probabilities in [0, 1]"))


def _count(value: Any) -> str:
    return str(len(value)) if isinstance(value, list) else "no list of"


def _mask(probe: Probe, rle: Any, at: str, problems: list[Problem]) -> None:
    if not (isinstance(rle, dict) and isinstance(rle.get("size"), list) and isinstance(rle.get("counts"), str)):
        problems.append(Problem(at, f"{str(rle)[:80]} is not COCO RLE", 'send {"size": [h, w], "counts": "..."} '
                                "(pycocotools.mask.encode, counts decoded as ASCII)"))
        return
    if list(rle["size"]) != list(probe.size):
        problems.append(Problem(f"{at}.size", f"{rle['size']} is not the image's [height, width] {list(probe.size)}",
                                "encode masks at the size of the image sent"))
        return
    try:
        Mask.from_rle(rle).array  # noqa: B018 - decoding is the check
    except Exception as error:
        problems.append(Problem(f"{at}.counts", f"does not decode: {type(error).__name__}: {error}",
                                "send pycocotools' compressed counts (Fortran order), as ASCII"))


def _span(probe: Probe, span: Any, at: str, problems: list[Problem]) -> None:
    if not (isinstance(span, dict) and isinstance(span.get("start"), int) and isinstance(span.get("end"), int)):
        problems.append(Problem(at, f"{str(span)[:80]} is not an entity span",
                                'send {"start": int, "end": int, "text": str}'))
        return
    start, end, offsets = span["start"], span["end"], Utf16(probe.text)
    try:
        if not start <= end:
            raise ValueError(f"[{start}, {end}) ends before it starts")
        quoted = offsets.quote(start, end)
    except ValueError as error:
        problems.append(Problem(at, f"{error} (the text has {offsets.length} UTF-16 code units)",
                                "send offsets into the text in UTF-16 code units (JavaScript's count), end "
                                "exclusive"))
        return
    if span.get("text") != quoted:
        problems.append(Problem(f"{at}.text", f"{span.get('text')!r} does not quote the text at [{start}, {end}): "
                                              f"{quoted!r}",
                                "send text == row.slice(start, end) (JavaScript: UTF-16 code units, end "
                                "exclusive)"))
