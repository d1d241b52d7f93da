"""The manifest's `ray` section and `bridge serve --ray`'s refusals; these need no Ray (the Ray Serve
deployment itself is tested in test_ray_serve.py, in a venv with the `ray` extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from bridge.commands.main import main
from bridge.core.manifest import ManifestError, load_manifest
from bridge.serving.ray_settings import RayScaling

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, ray: dict) -> Path:
    path = tmp_path / "model.yaml"
    factory = f"{ROOT / 'examples' / 'faces.py'}:FaceDetector"
    path.write_text(yaml.safe_dump({"name": "m", "model": {"factory": factory}, "ray": ray}), encoding="utf-8")
    return path


@pytest.mark.parametrize("ray, message", [
    ({"replicas": 0}, "ray.replicas: Input should be greater than 0"),
    ({"min_replicas": 2}, "ray: Value error, min_replicas needs max_replicas"),
    ({"min_replicas": 3, "max_replicas": 2}, "ray: Value error, min_replicas (3) is above max_replicas (2)"),
    ({"replicas": 5, "max_replicas": 4}, "replicas (5) must lie within min_replicas (1) and max_replicas (4)"),
    ({"num_gpus": -1}, "ray.num_gpus: Input should be greater than or equal to 0"),
    ({"workers": 2}, "ray.workers: Extra inputs are not permitted"),
])
def test_a_wrong_ray_section_names_the_key(tmp_path: Path, ray: dict, message: str,
                                           capsys: pytest.CaptureFixture) -> None:
    """Checked where it is used (`--ray`) and by `bridge check`."""
    path = write(tmp_path, ray)
    with pytest.raises(ManifestError) as error:
        RayScaling.of(load_manifest(path))
    assert f"{path}: " in str(error.value) and message in str(error.value)
    assert main(["check", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_autoscaling_starts_at_min_replicas_unless_told(tmp_path: Path) -> None:
    scaling = RayScaling.of(load_manifest(write(tmp_path, {"min_replicas": 0, "max_replicas": 3})))
    assert (scaling.min_replicas_or_default, scaling.max_replicas, "replicas" in scaling.model_fields_set) == \
        (0, 3, False)


def test_address_needs_ray(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", str(write(tmp_path, {})), "--address", "auto"]) == 2
    assert "bridge: --address names a Ray cluster and needs --ray" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="Ray is installed here")
def test_ray_without_the_extra_says_what_to_install(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", str(write(tmp_path, {})), "--ray"]) == 2
    assert "pip install 'annotation-bridge[ray]'" in capsys.readouterr().err
