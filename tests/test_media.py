"""Media in, safely: every image mode ends up upright 8-bit RGB, URLs are fetched within limits, video decodes.

Images are encoded with Pillow in the test and decoded for real; URLs are served by the local media server;
videos are encoded with PyAV in memory.
"""

from __future__ import annotations

import asyncio
import base64
import io
import struct
import zlib

import av
import numpy as np
import pytest
from PIL import Image

from bridge.core.errors import BadRequest, DeadlineExceeded, InvalidInput, TooLarge
from bridge.core.media import (
    MediaLimits,
    MediaLoader,
    decode_base64,
    decode_image,
    decode_video,
)
from tests.conftest import MediaServer, encode_image

LIMITS = MediaLimits()


def save(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares its size and holds no pixel data: decoding it would fail, measuring it does not."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))  # 8-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def assert_rgb(array: np.ndarray, shape: tuple[int, int]) -> None:
    assert array.dtype == np.uint8
    assert array.shape == (*shape, 3)


# --- decode_image ---------------------------------------------------------------------------------------------


def test_rgb_png_and_jpeg(astronaut):
    np.testing.assert_array_equal(decode_image(encode_image(astronaut), LIMITS), astronaut)
    jpeg = decode_image(encode_image(astronaut, "JPEG", quality=95), LIMITS)
    assert_rgb(jpeg, astronaut.shape[:2])
    assert np.abs(jpeg.astype(int) - astronaut).mean() < 4


def test_grayscale_becomes_three_equal_channels():
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    for fmt in ("PNG", "JPEG"):
        out = decode_image(save(Image.fromarray(gray, "L"), fmt, **({"quality": 100} if fmt == "JPEG" else {})),
                           LIMITS)
        assert_rgb(out, (6, 8))
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
        assert np.abs(out[..., 0].astype(int) - gray).max() <= (0 if fmt == "PNG" else 3)
    bilevel = decode_image(save(Image.fromarray(gray > 100)), LIMITS)
    np.testing.assert_array_equal(bilevel[..., 0], np.where(gray > 100, 255, 0))
    gray_alpha = decode_image(save(Image.new("LA", (3, 2), (77, 0))), LIMITS)
    assert (gray_alpha == 77).all()


def test_rgba_drops_alpha():
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 0
    rgba[0, 0] = (200, 100, 50, 255)
    out = decode_image(save(Image.fromarray(rgba, "RGBA")), LIMITS)
    assert_rgb(out, (4, 5))
    assert out[0, 0].tolist() == [200, 100, 50]
    assert out[1, 1].tolist() == [10, 20, 30]


def test_palette_with_and_without_transparency():
    palette = Image.new("P", (3, 2))
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (768 - 9))
    palette.putdata([0, 1, 2, 2, 1, 0])
    expected = [[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[0, 0, 255], [0, 255, 0], [255, 0, 0]]]
    for options in ({}, {"transparency": 2}):
        data = save(palette, **options)
        assert Image.open(io.BytesIO(data)).mode == "P"
        out = decode_image(data, LIMITS)
        assert_rgb(out, (2, 3))
        assert out.tolist() == expected
    gif = decode_image(save(palette, "GIF", transparency=1), LIMITS)
    assert gif.tolist() == expected


def test_16_bit_png_is_scaled_not_clipped():
    values = np.array([[0, 257, 32896, 65535], [1000, 20000, 40000, 60000]], dtype=np.uint16)
    data = save(Image.fromarray(values))
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # really 16 bits on disk
    out = decode_image(data, LIMITS)
    assert_rgb(out, (2, 4))
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]
    np.testing.assert_array_equal(out[1, :, 0], (values[1] / 257).astype(np.uint8))
    assert len(np.unique(out[..., 0])) == 8  # clipping to 255 would have flattened them


def test_jpeg_exif_orientation_is_applied():
    stored = np.zeros((40, 80, 3), np.uint8)  # 80 wide, 40 high, marker in the top-left quarter
    stored[:20, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = decode_image(save(Image.fromarray(stored), "JPEG", exif=exif, quality=95), LIMITS)
    assert_rgb(out, (80, 40))  # upright: 40 wide, 80 high
    bright = out[..., 0] > 128
    assert bright[:20, 20:].mean() > 0.95  # the marker is now top-right
    assert bright[:, :20].mean() < 0.05 and bright[20:].mean() < 0.05
    # orientation 1 (or none) leaves it as it is
    exif[0x0112] = 1
    assert decode_image(save(Image.fromarray(stored), "JPEG", exif=exif), LIMITS).shape == (40, 80, 3)


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (8, 6), (0, 255, 255, 0))  # red
    cmyk.paste((255, 0, 255, 0), (0, 0, 4, 6))  # green on the left half
    data = save(cmyk, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode_image(data, LIMITS)
    assert_rgb(out, (6, 8))
    np.testing.assert_allclose(out[3, 6], [255, 0, 0], atol=12)
    np.testing.assert_allclose(out[3, 1], [0, 255, 0], atol=12)


@pytest.mark.parametrize("data", [b"", b"hello, world", b"\x89PNG\r\n\x1a\n" + b"\0" * 40,
                                  b"%PDF-1.4\n%...", b"<svg xmlns='http://www.w3.org/2000/svg'/>"])
def test_non_image_bytes_are_invalid_input(data):
    with pytest.raises(InvalidInput) as error:
        decode_image(data, LIMITS, "image.url")
    assert error.value.status == 422
    assert "image.url" in error.value.message


def test_truncated_image_is_invalid_input(astronaut):
    data = encode_image(astronaut)
    with pytest.raises(InvalidInput, match="could not be decoded"):
        decode_image(data[: len(data) // 2], LIMITS)


def test_pixel_limit_is_checked_before_decoding():
    # the header says 3000 x 2000 and there is no pixel data: a decoder would fail, the limit answers first
    header = png_header_only(3000, 2000)
    with pytest.raises(TooLarge, match="limits.max_image_pixels") as error:
        decode_image(header, MediaLimits(max_image_pixels=5_000_000))
    assert error.value.status == 413
    assert "3000x2000" in error.value.message
    with pytest.raises(InvalidInput):  # under the limit it is decoded, and the missing data shows
        decode_image(header, MediaLimits(max_image_pixels=6_000_000))
    # a real image one pixel over the limit
    with pytest.raises(TooLarge):
        decode_image(save(Image.new("RGB", (10, 10))), MediaLimits(max_image_pixels=99))
    assert decode_image(save(Image.new("RGB", (10, 10))), MediaLimits(max_image_pixels=100)).shape == (10, 10, 3)


def test_decompression_bomb_is_too_large_even_under_a_generous_limit():
    # past Pillow's own bomb guards (a warning over ~89 Mpx, an error over ~179 Mpx): TooLarge, not a 500
    for side in (10_000, 20_000):
        with pytest.raises(TooLarge):
            decode_image(png_header_only(side, side), MediaLimits(max_image_pixels=10**10))


# --- base64 ---------------------------------------------------------------------------------------------------


def test_decode_base64_plain_data_url_and_line_breaks():
    payload = bytes(range(256)) * 3
    plain = base64.b64encode(payload).decode()
    assert decode_base64(plain) == payload
    assert decode_base64("data:image/png;base64," + plain) == payload
    wrapped = base64.encodebytes(payload).decode()  # a line break every 76 characters
    assert "\n" in wrapped
    assert decode_base64(wrapped) == payload
    assert decode_base64(wrapped.replace("\n", "\r\n")) == payload
    assert decode_base64("data:image/jpeg;base64,\n" + wrapped) == payload


@pytest.mark.parametrize("broken", ["not base64 at all!", "abc", "QUJD$$$", "data:image/png;base64,QUJ=D"])
def test_broken_base64_is_a_bad_request(broken):
    with pytest.raises(BadRequest, match="image.base64 is not valid base64") as error:
        decode_base64(broken)
    assert error.value.status == 400


def test_base64_image_end_to_end(astronaut):
    data = decode_base64("data:image/png;base64," + base64.encodebytes(encode_image(astronaut)).decode())
    np.testing.assert_array_equal(decode_image(data, LIMITS), astronaut)


# --- MediaLoader against a real HTTP server -----------------------------------------------------------------------


def fetch(url: str, limits: MediaLimits, how: str = "fetch"):
    """Run one loader call in a fresh event loop, closing the loader afterwards."""

    async def go():
        loader = MediaLoader(limits)
        try:
            return await getattr(loader, how)(url)
        finally:
            await loader.aclose()

    return asyncio.run(go())


OPEN = MediaLimits(allow_private_urls=True, fetch_timeout=5)


@pytest.fixture(scope="module")
def shared_media_server():
    server = MediaServer()  # one server for the module: stopping one takes half a second
    yield server
    server.close()


@pytest.fixture
def media_server(shared_media_server):
    shared_media_server.requests.clear()
    shared_media_server.files.clear()
    return shared_media_server


def test_fetch_an_image_by_url(media_server, astronaut):
    url = media_server.add("astronaut.png", encode_image(astronaut))
    np.testing.assert_array_equal(fetch(url, OPEN, "image"), astronaut)
    assert media_server.requests == ["/files/astronaut.png"]


def test_redirects_are_followed_up_to_the_limit(media_server):
    media_server.add("x.bin", b"payload")
    assert fetch(f"{media_server.base}/redirect/3/x.bin", OPEN) == b"payload"
    assert fetch(f"{media_server.base}/redirect/5/x.bin", OPEN) == b"payload"  # max_redirects = 5
    media_server.requests.clear()
    with pytest.raises(InvalidInput, match="redirected more than 5 times"):
        fetch(f"{media_server.base}/redirect/6/x.bin", OPEN)
    assert len(media_server.requests) == 6  # it stopped, it did not follow on
    with pytest.raises(InvalidInput, match="redirected more than 1 times"):
        fetch(f"{media_server.base}/redirect/2/x.bin", MediaLimits(allow_private_urls=True, max_redirects=1))


@pytest.mark.parametrize("code", [404, 403, 500])
def test_http_errors_are_invalid_input(media_server, code):
    with pytest.raises(InvalidInput, match=f"HTTP {code}") as error:
        fetch(f"{media_server.base}/status/{code}", OPEN)
    assert error.value.status == 422


def test_error_messages_leave_out_the_query_string(media_server):
    with pytest.raises(InvalidInput) as error:
        fetch(f"{media_server.base}/status/404?X-Amz-Signature=secret-token", OPEN)
    assert "secret-token" not in error.value.message
    assert "/status/404" in error.value.message


def test_slow_server_is_deadline_exceeded(media_server):
    limits = MediaLimits(allow_private_urls=True, fetch_timeout=0.3)
    with pytest.raises(DeadlineExceeded, match="limits.fetch_timeout") as error:
        fetch(f"{media_server.base}/slow/3", limits)
    assert error.value.status == 504


def test_endless_body_is_cut_at_the_byte_limit(media_server):
    limits = MediaLimits(allow_private_urls=True, max_download_bytes=200_000, fetch_timeout=5)
    with pytest.raises(TooLarge, match="limits.max_download_bytes") as error:
        fetch(f"{media_server.base}/endless", limits)
    assert error.value.status == 413


def test_declared_length_over_the_limit_is_refused(media_server):
    url = media_server.add("big.bin", b"x" * 5000)
    with pytest.raises(TooLarge, match="5,000 bytes"):
        fetch(url, MediaLimits(allow_private_urls=True, max_download_bytes=4999))
    assert fetch(url, MediaLimits(allow_private_urls=True, max_download_bytes=5000)) == b"x" * 5000


def test_downloaded_non_image_is_invalid_input(media_server):
    url = media_server.add("page.html", b"<html>not an image</html>", "text/html")
    with pytest.raises(InvalidInput, match="image.url"):
        fetch(url, OPEN, "image")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://x/1",
                                 "data:image/png;base64,AAAA", "http:///no-host.png", "example.com/a.png"])
def test_only_http_urls(url):
    with pytest.raises(BadRequest, match="must be an http"):
        fetch(url, OPEN)


def test_loopback_is_refused_unless_allowed(media_server):
    url = media_server.add("x.bin", b"payload")
    closed = MediaLimits(fetch_timeout=5)
    for target in (url, url.replace("127.0.0.1", "localhost")):
        with pytest.raises(BadRequest, match="limits.allow_private_urls") as error:
            fetch(target, closed)
        assert error.value.status == 400
    assert media_server.requests == []  # refused before connecting
    assert fetch(url, OPEN) == b"payload"


@pytest.mark.parametrize("host", ["169.254.169.254", "10.1.2.3", "192.168.0.1", "172.16.5.4", "0.0.0.0",
                                  "[::1]", "[fe80::1]", "[::ffff:127.0.0.1]"])
def test_private_and_link_local_addresses_refused_without_connecting(host):
    # a connection attempt to a black-holed address would time out (DeadlineExceeded) or fail (InvalidInput):
    # BadRequest at once shows the address was refused before any connection
    limits = MediaLimits(fetch_timeout=0.5)
    with pytest.raises(BadRequest, match="non-public address"):
        fetch(f"http://{host}/latest/meta-data/", limits)


# --- video ----------------------------------------------------------------------------------------------------


def make_video(frames: int = 12, codec: str = "mpeg4", width: int = 64, height: int = 48) -> bytes:
    """An mp4 in memory: frame i has a white square at x = 4 i and a background that changes with i."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=12)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            array = np.zeros((height, width, 3), np.uint8)
            array[:] = (i * 20, 255 - i * 20, 128)
            array[8:24, 4 * i:4 * i + 16] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def video() -> bytes:
    return make_video()


def test_decode_video_every_frame(video):
    frames = list(decode_video(video, LIMITS))
    assert [i for i, _ in frames] == list(range(12))
    for index, frame in frames:
        assert_rgb(frame, (48, 64))
        # the background colour tells the frame apart (lossy codec: allow some error)
        assert abs(int(frame[40, 60, 0]) - index * 20) < 16
        assert frame[12:20, 4 * index + 4:4 * index + 12].mean() > 200  # the moving square is where it was


def test_decode_video_with_stride(video):
    frames = list(decode_video(video, LIMITS, stride=3))
    assert [i for i, _ in frames] == [0, 3, 6, 9]
    assert abs(int(frames[2][1][40, 60, 0]) - 120) < 16  # frame 6 really is frame 6


def test_h264_when_the_wheel_has_it():
    if "h264" not in av.codecs_available and "libx264" not in av.codecs_available:
        pytest.skip("this PyAV wheel has no H.264 encoder")
    frames = list(decode_video(make_video(6, "libx264" if "libx264" in av.codecs_available else "h264"), LIMITS, 2))
    assert [i for i, _ in frames] == [0, 2, 4]


def test_video_frame_limit_is_too_large(video):
    with pytest.raises(TooLarge, match="limits.max_video_frames") as error:
        list(decode_video(video, MediaLimits(max_video_frames=11)))
    assert error.value.status == 413
    assert len(list(decode_video(video, MediaLimits(max_video_frames=12)))) == 12
    assert len(list(decode_video(video, MediaLimits(max_video_frames=4), stride=3))) == 4  # the stride counts


def test_video_pixel_limit(video):
    with pytest.raises(TooLarge, match="max_image_pixels"):
        list(decode_video(video, MediaLimits(max_image_pixels=64 * 48 - 1)))


@pytest.mark.parametrize("data", [b"", b"garbage" * 200, b"\0" * 4096])
def test_garbage_video_is_invalid_input(data):
    with pytest.raises(InvalidInput, match="could not be decoded") as error:
        list(decode_video(data, LIMITS))
    assert error.value.status == 422


def test_truncated_video_is_invalid_input(video):
    with pytest.raises(InvalidInput):
        list(decode_video(video[:300], LIMITS))


def test_video_is_decoded_lazily(video):
    frames = decode_video(video, LIMITS)
    assert next(frames)[0] == 0  # the first frame comes before the rest are decoded
    frames.close()  # and closing it closes the container
