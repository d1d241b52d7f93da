"""The media path under attack, on loopback: each test is an attack that once took the server down, stalled it,
or blew its memory (issue 10), and the behaviour a user sees now.

Bounded: a hundred requests at most, bombs of a few MB, servers on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
import random
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from fractions import Fraction
from http.server import BaseHTTPRequestHandler

import av
import httpx
import numpy as np
import pytest
from PIL import Image, ImageOps

from bridge.commands.file_server import FileServer, send
from bridge.core.errors import BadRequest, DeadlineExceeded, InvalidInput, TooLarge
from bridge.core.logs import configure_logging
from bridge.core.media import MediaLimits, MediaLoader, decode_image, decode_video
from bridge.serving.app import create_app
from tests.conftest import ROOT, b64, encode_image
from tests.test_media import make_video

SECRET = "attack-secret"


class AttackServer(FileServer):
    """Loopback URLs an attacker would hand the bridge: /trickle/A/B (headers at once, a byte after A s and
    another B s later) and /encoded/NAME (a body sent with a Content-Encoding, e.g. a bomb)."""

    def __init__(self) -> None:
        self.seen = threading.Event()
        self.bodies: dict[str, tuple[bytes, str]] = {}
        super().__init__(routes={"trickle": self._trickle, "encoded": self._encoded})

    def _trickle(self, handler: BaseHTTPRequestHandler, parts: list[str]) -> None:
        self.seen.set()
        handler.close_connection = True
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.end_headers()
        for pause in parts[1:3]:
            time.sleep(float(pause))
            handler.wfile.write(b"\0")
            handler.wfile.flush()

    def _encoded(self, handler: BaseHTTPRequestHandler, parts: list[str]) -> None:
        self.seen.set()
        body, encoding = self.bodies[parts[1]]
        send(handler, 200, body, "image/png", {"Content-Encoding": encoding})

    def add(self, name: str, body: bytes, encoding: str) -> str:
        self.bodies[name] = (body, encoding)
        return f"{self.base}/encoded/{name}"


@pytest.fixture
def attack_server():
    server = AttackServer()
    yield server
    server.close()


def wait_ready(base: str) -> str:
    """The base URL, once /readyz says the model is loaded (it loads in the background)."""
    deadline = time.monotonic() + 60
    while httpx.get(f"{base}/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the model did not load"
        time.sleep(0.05)
    return base


def loader_run(limits: MediaLimits, go):
    """Run `go(loader)` in a fresh event loop with a fresh loader, closed afterwards."""

    async def main():
        loader = MediaLoader(limits)
        try:
            return await go(loader)
        finally:
            await loader.aclose()

    return asyncio.run(main())


# --- 1. slow URLs must not poison the fetch pool --------------------------------------------------------------


def test_a_hundred_slow_urls_leave_the_pool_serving(media_server):
    """100 fetches of a URL slower than the fetch timeout, half of them abandoned early by their caller (a job
    deadline), on a 16-connection pool: all time out, and the next fetch of a fast URL succeeds."""
    fast = media_server.add("fast.bin", b"fast")
    limits = MediaLimits(allow_private_urls=True, fetch_timeout=0.5, fetch_connections=16)

    async def go(loader: MediaLoader):
        async def slow(i: int):
            fetch = loader.fetch(f"{media_server.base}/slow/1.5")
            return await (asyncio.wait_for(fetch, 0.5) if i % 2 else fetch)

        outcomes = await asyncio.gather(*(slow(i) for i in range(100)), return_exceptions=True)
        assert {type(o) for o in outcomes} <= {DeadlineExceeded, TimeoutError}, outcomes
        return [await loader.fetch(fast) for _ in range(3)], loader.stalled()

    answers, stalled = loader_run(limits, go)
    assert answers == [b"fast"] * 3
    assert stalled is None


def test_readiness_says_degraded_while_no_fetch_gets_a_connection(serve_app, make_manifest, attack_server,
                                                                   media_server):
    """One connection, held by a URL that sends a byte halfway through the read time-out and then stalls: the
    holder ends by its read time-out, half a time-out after the next fetch has waited its whole time-out
    for that connection; /readyz says so in between, and is ready again once the holder has ended."""
    manifest = make_manifest(model={"factory": "examples/faces.py:FaceDetector"},
                             limits={"fetch_timeout": 2, "fetch_connections": 1})
    base = wait_ready(serve_app(create_app(manifest)))
    image = media_server.add("face.png", encode_image(np.full((40, 40, 3), 90, np.uint8)))
    with httpx.Client(base_url=base, timeout=30) as client:
        holder: list[httpx.Response] = []
        thread = threading.Thread(target=lambda: holder.append(
            client.post("/v7/infer", json={"image": {"url": f"{attack_server.base}/trickle/1/5"}})))
        thread.start()
        assert attack_server.seen.wait(10)  # the holder has the only connection
        waiter = client.post("/v7/infer", json={"image": {"url": image}})
        assert waiter.status_code == 504 and "limits.fetch_timeout" in waiter.json()["error"]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "degraded" and "limits.fetch_connections" in ready.json()["reason"]
        thread.join(30)
        assert holder[0].status_code == 504
        assert client.get("/readyz").json() == {"status": "ready"}
        assert client.post("/v7/infer", json={"image": {"url": image}}).status_code == 200


def test_a_body_trickling_in_under_the_read_timeout_is_cut_at_the_fetch_timeout(attack_server):
    """Each byte comes within the read time-out, the whole body does not come within the fetch timeout."""
    url = f"{attack_server.base}/trickle/0.6/0.6"
    with pytest.raises(DeadlineExceeded, match="limits.fetch_timeout"):
        loader_run(MediaLimits(allow_private_urls=True, fetch_timeout=1), lambda loader: loader.fetch(url))
    assert loader_run(MediaLimits(allow_private_urls=True, fetch_timeout=3),
                      lambda loader: loader.fetch(url)) == b"\0\0"


# --- 2. compressed bodies: the cap counts decoded bytes, decoding off the event loop ----------------------------


def test_gzip_gzip_bomb_is_refused_within_the_cap(attack_server):
    """A ~2 KB `Content-Encoding: gzip, gzip` body that inflates to 256 MiB: 413 at the cap, without ever
    holding more than a few MiB (traced memory; before, the whole 256 MiB was inflated at once)."""
    bomb = gzip.compress(gzip.compress(b"\0" * 256 * 2**20, 9), 9)
    assert len(bomb) < 4096
    url = attack_server.add("bomb", bomb, "gzip, gzip")
    limits = MediaLimits(allow_private_urls=True, max_download_bytes=2**20)
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge, match="limits.max_download_bytes") as error:
            loader_run(limits, lambda loader: loader.fetch(url))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert error.value.status == 413
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MiB held while refusing a 1 MiB-capped download"


def test_bomb_answers_413_and_health_answers_meanwhile(serve_app, make_manifest, attack_server):
    manifest = make_manifest(model={"factory": "examples/faces.py:FaceDetector"},
                             limits={"max_download_bytes": 2**20})
    base = serve_app(create_app(manifest))
    url = attack_server.add("bomb", gzip.compress(gzip.compress(b"\0" * 64 * 2**20, 9), 9), "gzip, gzip")
    with httpx.Client(base_url=base, timeout=30) as client:
        response = client.post("/v7/infer", json={"image": {"url": url}})
        assert response.status_code == 413 and "limits.max_download_bytes" in response.json()["error"]
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "gzip, deflate", "identity"])
def test_encoded_images_still_decode(attack_server, astronaut, encoding):
    png = encode_image(astronaut)
    body = png
    for layer in encoding.split(", "):
        body = gzip.compress(body) if layer == "gzip" else zlib.compress(body) if layer == "deflate" else body
    url = attack_server.add("image", body, encoding)
    image = loader_run(MediaLimits(allow_private_urls=True), lambda loader: loader.image(url))
    np.testing.assert_array_equal(image, astronaut)


def test_unknown_or_broken_encoding_is_invalid_input(attack_server):
    limits = MediaLimits(allow_private_urls=True)
    for encoding, body, message in (("br", b"\x1b\x00", "does not decode"), ("gzip", b"not gzip", "not valid gzip")):
        url = attack_server.add("x", body, encoding)
        with pytest.raises(InvalidInput, match=message) as error:
            loader_run(limits, lambda loader: loader.fetch(url))
        assert error.value.status == 422


# --- 3. decoding memory is bounded -----------------------------------------------------------------------------


def test_decodes_at_once_are_bounded_by_max_decodes():
    """Eight decodes asked for at once, two decode threads: never more than two run together, and a caller
    that gives up does not free its thread before the decode ends."""
    running, most = [0], [0]
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return i

    async def go(loader: MediaLoader):
        quitter = asyncio.ensure_future(loader.decode(work, -1))
        await asyncio.sleep(0)
        quitter.cancel()
        return await asyncio.gather(*(loader.decode(work, i) for i in range(8)))

    assert loader_run(MediaLimits(max_decodes=2), go) == list(range(8))
    assert most[0] == 2


DECODE_MEMORY = """
import io, sys
from PIL import Image
from bridge.core.media import MediaLimits, decode_image

def peak():  # this process's own high-water mark (ru_maxrss would count the parent's, from before exec)
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024

data = open(sys.argv[1], "rb").read()
warm = io.BytesIO()
Image.new("RGB", (8, 8)).save(warm, Image.open(sys.argv[1]).format)
decode_image(warm.getvalue(), MediaLimits())  # plugins imported: only the decode is measured
before = peak()
image = decode_image(data, MediaLimits())
print((peak() - before) / image.shape[0] / image.shape[1])
"""


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_decoding_costs_at_most_nine_bytes_a_pixel(tmp_path, fmt):
    """Peak memory of decoding a 3000x2500 image, in a fresh process: Pillow's 4-byte pixels plus our 3-byte
    result and a strip, no whole-image copies besides (it was 18 bytes a pixel: exif_transpose, convert and
    tobytes copies). The README's memory budget rests on this figure."""
    path = tmp_path / f"big.{fmt.lower()}"
    Image.new("RGB", (3000, 2500), (10, 200, 30)).save(path, fmt)
    out = subprocess.run([sys.executable, "-c", DECODE_MEMORY, str(path)], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, check=True)
    assert float(out.stdout) <= 9.0, out.stdout


def test_exif_orientation_matches_pillow_for_all_eight():
    array = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, "PNG", exif=exif.tobytes())
        expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buffer.getvalue()))))
        got = decode_image(buffer.getvalue(), MediaLimits())
        np.testing.assert_array_equal(got, expected, err_msg=f"orientation {orientation}")
        assert got.flags.c_contiguous


# --- 4. every video frame's size is checked ------------------------------------------------------------------


def _jpeg_packets(width: int, height: int, count: int) -> list[av.Packet]:
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt, encoder.time_base = width, height, "yuvj420p", Fraction(1, 12)
    packets = []
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 40 * i, np.uint8), format="rgb24")
        frame = frame.reformat(format="yuvj420p")
        frame.pts = i
        packets += encoder.encode(frame)
    return packets + encoder.encode(None)


def lying_avi() -> bytes:
    """An MJPEG AVI whose header (and first frames) say 16x16, and whose last two frames are 64x48."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="avi") as container:
        stream = container.add_stream("mjpeg", rate=12)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuvj420p"
        for i, packet in enumerate(_jpeg_packets(16, 16, 3) + _jpeg_packets(64, 48, 2)):
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 12)
            container.mux(packet)
    return buffer.getvalue()


def test_a_frame_bigger_than_the_header_says_is_too_large():
    data = lying_avi()
    with av.open(io.BytesIO(data)) as container:
        assert (container.streams.video[0].width, container.streams.video[0].height) == (16, 16)
    frames = decode_video(data, MediaLimits(max_image_pixels=16 * 16))
    assert [index for index, _ in zip(range(3), frames)] == [0, 1, 2]
    with pytest.raises(TooLarge, match="video frame 3 is 64x48") as error:
        next(frames)
    assert error.value.status == 413


def test_lying_video_by_url_answers_413(serve_app, make_manifest, media_server):
    manifest = make_manifest(model={"factory": "examples/faces.py:FaceDetector"},
                             limits={"max_image_pixels": 1000})
    base = serve_app(create_app(manifest))
    url = media_server.add("lying.avi", lying_avi(), "video/x-msvideo")
    response = httpx.post(f"{base}/v7/infer", json={"video": {"url": url}}, timeout=30)
    assert response.status_code == 413
    assert "video frame 3 is 64x48" in response.json()["error"]


def test_deadline_in_the_middle_of_decoding_a_video_is_504(serve_app, make_manifest, media_server):
    """The deadline passes while a batch of frames decodes on a decode thread: 504, not a 500 from closing a
    generator that thread is still running."""
    manifest = make_manifest(model={"factory": "tests.service_models:Finder"},
                             limits={"deadline": 0.1, "batch_size": 64})
    base = wait_ready(serve_app(create_app(manifest)))
    url = media_server.add("long.mp4", make_video(frames=12, width=1280, height=720), "video/mp4")
    with httpx.Client(base_url=base, timeout=30) as client:
        response = client.post("/v7/infer", json={"video": {"url": url}})
        assert response.status_code == 504, response.text
        assert "limits.deadline" in response.json()["error"]
        assert client.get("/readyz").status_code == 200


# --- 11. bad input is a 4xx, always -----------------------------------------------------------------------------


def broken_exif_jpeg() -> bytes:
    """A JPEG whose EXIF block (orientation 6 and a few tags, bytes mutated) makes Pillow's exif_transpose
    raise struct.error: the first such mutant of a seeded search, so the test says what it tests."""
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 24, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112], exif[0x010F], exif[0x0132] = 6, "Canon", "2020:01:01 00:00:00"
    exif[0x8769] = {0x9003: "2020:01:01 00:00:00"}
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes())
    data = buffer.getvalue()
    start = data.index(b"Exif") + 6
    rng = random.Random(1)
    for _ in range(5000):
        mutant = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutant[rng.randrange(start, start + 194)] = rng.randrange(256)
        try:
            ImageOps.exif_transpose(Image.open(io.BytesIO(mutant)))
        except struct.error:
            return bytes(mutant)
        except Exception:
            continue
    raise AssertionError("no mutant breaks exif_transpose any more; find another broken EXIF")


@pytest.fixture
def app_url(serve_app, make_manifest):
    """Faces on V7 and Labelbox, with a parameter whose schema has a range."""
    manifest = make_manifest(
        model={"factory": "examples/faces.py:FaceDetector"},
        params={"type": "object", "properties": {"min_confidence": {"type": "number", "minimum": 0,
                                                                     "maximum": 1}}},
        limits={"max_video_frames": 100},
        platforms={"v7": {}, "labelbox": {"secret": SECRET}},
    )
    return wait_ready(serve_app(create_app(manifest)))


def post_raw(base: str, path: str, text: str) -> httpx.Response:
    headers = {"content-type": "application/json", "authorization": f"Bearer {SECRET}"}
    return httpx.post(f"{base}{path}", content=text.encode(), headers=headers, timeout=30)


def labelbox_body(image: str, extra: str = "") -> str:
    return json.dumps({"prompt": [{"role": "user", "parts": [{"image": image}]}]})[:-1] + extra + "}"


def test_broken_exif_jpeg_is_decoded_not_a_500(app_url):
    data = broken_exif_jpeg()
    for path, body in (("/v7/infer", json.dumps({"image": {"base64": b64(data)}})),
                       ("/labelbox/infer", labelbox_body(b64(data)))):
        response = post_raw(app_url, path, body)
        assert response.status_code == 200, response.text  # the pixels are fine; the orientation is read


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_422(app_url, number):
    image = b64(encode_image(np.zeros((20, 20, 3), np.uint8)))
    box = f'{{"image": {{"base64": "{image}"}}, "params": {{"bbox": {{"x": {number}, "y": 0, "w": 5, "h": 5}}}}}}'
    response = post_raw(app_url, "/v7/infer", box)
    assert response.status_code == 422 and "params.bbox.x" in response.json()["error"]
    param = f'{{"image": {{"base64": "{image}"}}, "params": {{"min_confidence": {number}}}}}'
    labelbox = labelbox_body(image, f', "min_confidence": {number}')
    for path, body in (("/v7/infer", param), ("/labelbox/infer", labelbox)):
        response = post_raw(app_url, path, body)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "invalid parameter min_confidence: not a finite number"


BAD_URLS = ["http://example.com:99999/a.png", "http://example.com:abc/a.png", "http://[::1/x",
            "http://" + "a" * 64 + ".example.com/a.png", "http://ex\\udcffample.com/a.png"]


def test_malformed_urls_are_400(serve_app, make_manifest):
    for allow in (False, True):
        manifest = make_manifest(model={"factory": "examples/faces.py:FaceDetector"},
                                 limits={"allow_private_urls": allow})
        base = serve_app(create_app(manifest))
        for url in BAD_URLS:
            response = post_raw(base, "/v7/infer", '{"image": {"url": "%s"}}' % url)
            assert response.status_code == 400, (url, response.text)
            assert "image.url is not a valid URL" in response.json()["error"]


def test_malformed_urls_fail_in_the_loader_before_any_connection():
    for url in BAD_URLS:
        url = url.encode().decode("unicode_escape") if "\\u" in url else url
        with pytest.raises(BadRequest, match="not a valid URL"):
            loader_run(MediaLimits(allow_private_urls=True), lambda loader: loader.fetch(url))


def test_too_many_frame_urls_is_413(app_url):
    image = {"base64": b64(encode_image(np.zeros((8, 8, 3), np.uint8)))}
    response = post_raw(app_url, "/v7/infer", json.dumps({"video": {"frame_urls": [image] * 101}}))
    assert response.status_code == 413 and "limits.max_video_frames" in response.json()["error"]
    assert post_raw(app_url, "/v7/infer", json.dumps({"video": {"frame_urls": [image] * 100}})).status_code == 200


# --- 12. signed URLs' queries never reach the log --------------------------------------------------------------


def test_signed_url_queries_are_not_logged(media_server, caplog):
    media_server.add("x.bin", b"payload")
    signed = f"{media_server.base}/redirect/2/x.bin?X-Amz-Signature=first-secret&X-Amz-Credential=AKIA"
    for name in (None, "httpx", "httpcore"):  # `bridge serve` quiets httpx; at debug level it speaks
        caplog.set_level(logging.DEBUG, logger=name)
    configure_logging("debug")  # what every command does first: handlers that are not ours are covered too
    assert loader_run(MediaLimits(allow_private_urls=True), lambda loader: loader.fetch(signed)) == b"payload"
    with pytest.raises(InvalidInput, match="HTTP 404"):
        loader_run(MediaLimits(allow_private_urls=True),
                   lambda loader: loader.fetch(f"{media_server.base}/status/404?sig=second-secret"))
    assert any(record.name == "httpx" for record in caplog.records)  # the client did log its requests
    assert "/redirect/2/x.bin" in caplog.text
    for secret in ("first-secret", "AKIA", "second-secret"):
        assert secret not in caplog.text



@pytest.mark.parametrize("box", [{"x": 1e308, "y": 0, "w": 1e308, "h": 5}, {"x": 0, "y": 1.7e308, "w": 5, "h": 1.7e308}])
def test_a_box_whose_far_corner_overflows_is_422(app_url, box):
    image = b64(encode_image(np.zeros((20, 20, 3), np.uint8)))
    response = post_raw(app_url, "/v7/infer", json.dumps({"image": {"base64": image}, "params": {"bbox": box}}))
    assert response.status_code == 422, response.text
    assert "params.bbox" in response.json()["error"]
    assert post_raw(app_url, "/v7/infer", json.dumps({"image": {"base64": image}})).status_code == 200
