import httpx

from bridge.app import create_app
from tests.conftest import b64, encode_image


def test_all_shapes_model_serves_on_v7(serve_app, make_manifest, astronaut):
    manifest = make_manifest(model={"factory": "tests/shapes_model.py:AllShapes"})
    base = serve_app(create_app(manifest))
    answer = httpx.post(f"{base}/v7/infer", json={"image": {"base64": b64(encode_image(astronaut))}}).json()
    assert answer["status"] == "succeeded"
