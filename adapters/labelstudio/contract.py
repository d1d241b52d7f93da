"""Label Studio's ML backend contract, checked against any running backend (`bridge check URL --platform
labelstudio`; the URL is the backend's, as registered with Label Studio).

- `GET /health`: 200 with JSON;
- `POST /setup` with the label config (`--label-config FILE`, else a config with one `RectangleLabels`
  control and no label): `{"model_version": "<a string>"}`;
- `POST /predict` with two tasks, the image (at a URL the backend can fetch: see `bridge check URL`'s media)
  and a task whose image cannot be read: `{"results": [...]}` with one entry per task, in order, and the
  readable one's regions in Label Studio's form: `from_name`/`to_name`/`type` of a control of the config,
  percent coordinates within [0, 100], `original_width`/`original_height` the image's, a `score` in [0, 1].
  The broken task must fail alone, not the whole call.
"""

from __future__ import annotations

from typing import Any

from adapters.labelstudio.config import ConfigError, parse_config
from bridge.platforms.probe import Probe, Problem, json_of, number, request

GENERIC_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image"/>
</View>
"""
PERCENT_KEYS = ("x", "y", "width", "height", "radiusX", "radiusY")


def check(probe: Probe) -> list[Problem]:
    problems: list[Problem] = []
    config = probe.label_config or GENERIC_CONFIG
    try:
        controls = {control.name: control for control in parse_config(config).controls}
    except ConfigError as error:
        return [Problem("--label-config", str(error), "give the project's label config (XML)")]
    response = request(probe, "GET", "/health", problems)
    if response is not None and (response.status_code != 200 or json_of(response, probe.where("GET", "/health"),
                                                                          problems) is None):
        problems.append(Problem(probe.where("GET", "/health"), f"answered {response.status_code}",
                                "answer 200 with JSON, e.g. {\"status\": \"UP\"}: Label Studio attaches nothing else"))
    where = probe.where("POST", "/setup")
    response = request(probe, "POST", "/setup", problems, json={"project": "1.0", "schema": config,
                                                                 "hostname": probe.url, "access_token": None})
    setup = json_of(response, where, problems) if response is not None else None
    if isinstance(setup, dict) and not isinstance(setup.get("model_version"), str):
        problems.append(Problem(f"{where} $.model_version", f"missing or not a string: {setup!r:.80}",
                                'answer {"model_version": "<name-version>"}'))
    tasks = [{"id": 1, "data": {"image": probe.image_url}}, {"id": 2, "data": {"image": probe.image_url + "-none"}}]
    where = probe.where("POST", "/predict")
    response = request(probe, "POST", "/predict", problems,
                       json={"tasks": tasks, "project": "1.0", "label_config": config, "params": {"context": None}})
    answer = json_of(response, where, problems) if response is not None else None
    if answer is None:
        return problems
    if response.status_code != 200:
        problems.append(Problem(where, f"answered {response.status_code}: {str(answer)[:200]}",
                                "answer 200 with one entry per task; a task that fails fails alone"))
        return problems
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list) or len(results) != len(tasks):
        problems.append(Problem(f"{where} $.results", f"{results!r:.80} is not one entry per task ({len(tasks)})",
                                "answer {\"results\": [...]} with one entry per task, in order: Label Studio stores "
                                "nothing otherwise"))
        return problems
    for index, entry in enumerate(results[:1]):
        _entry(probe, entry, f"{where} $.results[{index}]", controls, problems)
    return problems


def _entry(probe: Probe, entry: Any, at: str, controls: dict[str, Any], problems: list[Problem]) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("result"), list):
        problems.append(Problem(at, f"{entry!r:.80} has no `result` list", 'answer {"result": [regions], "score", '
                                                                           '"model_version"}'))
        return
    score = entry.get("score")
    if score is not None and not number(score):
        problems.append(Problem(f"{at}.score", f"{score!r} is not a number", "a task's score is a number (or null)"))
    height, width = probe.size
    for index, region in enumerate(entry["result"]):
        here = f"{at}.result[{index}]"
        control = controls.get(region.get("from_name")) if isinstance(region, dict) else None
        if control is None:
            problems.append(Problem(here, f"from_name {region.get('from_name') if isinstance(region, dict) else region!r}"
                                          " names no control of the label config",
                                    "use the control tags' names of the config Label Studio sends"))
            continue
        if region.get("to_name") not in control.to_name or region.get("type") != control.result_type:
            problems.append(Problem(here, f"to_name {region.get('to_name')!r} / type {region.get('type')!r} do not "
                                          f"match {control.type} {control.name!r}",
                                    f"to_name one of {list(control.to_name)}, type {control.result_type!r}"))
        if "original_width" in region and (region.get("original_width"), region.get("original_height")) != (width,
                                                                                                          height):
            problems.append(Problem(here, f"original size {region.get('original_width')}x{region.get('original_height')}"
                                          f" but the image is {width}x{height}", "give the image's own size"))
        value = region.get("value") if isinstance(region.get("value"), dict) else {}
        for key in PERCENT_KEYS:
            if key in value and not (number(value[key]) and -1e-6 <= value[key] <= 100 + 1e-6):
                problems.append(Problem(f"{here}.value.{key}", f"{value[key]!r} is not a percentage of the image",
                                        "coordinates are percent of the image's width and height"))
        if not (number(region.get("score", 0)) and 0 <= region.get("score", 0) <= 1):
            problems.append(Problem(f"{here}.score", f"{region.get('score')!r} is not in [0, 1]", "a confidence"))
