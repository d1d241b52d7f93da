"""Label Studio's brush RLE: ours against the SDK's own encoder and decoder (`label_studio_sdk.converter.brush`,
run in Label Studio's venv: the SDK pins an older OpenCV than ours, so it is not installed beside the bridge)."""

from __future__ import annotations

import numpy as np
import pytest

from adapters.labelstudio.brush import decode, decode_mask, encode, encode_mask
from tests.labelstudio_server import Installation, install

SDK = """
import json, sys
import numpy as np
from label_studio_sdk.converter.brush import decode_rle, encode_rle, mask2rle
out = []
for job in json.load(sys.stdin):
    if job["do"] == "decode":
        out.append(decode_rle(job["rle"]).tolist())
    elif job["do"] == "mask2rle":
        mask = np.array(job["mask"], dtype=np.uint8).reshape(job["shape"]) * 255
        out.append(mask2rle(mask))
    else:
        out.append(encode_rle(np.array(job["values"], dtype=int)))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def labelstudio() -> Installation:
    return install()


def masks() -> list[np.ndarray]:
    rng = np.random.default_rng(17)
    blobs = np.zeros((60, 90), bool)
    blobs[5:25, 10:70] = True
    blobs[40:, 80:] = True
    yy, xx = np.ogrid[:60, :90]
    blobs ^= (xx - 45) ** 2 + (yy - 30) ** 2 < 15 ** 2
    return [
        np.zeros((4, 5), bool), np.ones((4, 5), bool), np.eye(7, 5, dtype=bool), np.ones((1, 1), bool),
        blobs, rng.random((33, 47)) < 0.3,
        np.ones((200, 400), bool),  # 320000 equal values: runs longer than one block holds (65536)
    ]


def test_our_masks_are_the_sdks_bytes_and_decode_with_it(labelstudio: Installation) -> None:
    ours = [encode_mask(mask) for mask in masks()]
    jobs = [{"do": "mask2rle", "mask": m.astype(int).ravel().tolist(), "shape": list(m.shape)} for m in masks()]
    jobs += [{"do": "decode", "rle": rle} for rle in ours]
    results = labelstudio.run_python(SDK, jobs)
    theirs, decoded = results[:len(ours)], results[len(ours):]
    for mask, rle, sdk_rle, sdk_values in zip(masks(), ours, theirs, decoded):
        # same format choices (one repeat block per run, 8-bit words, widths 3/4/8/16); the SDK pads a whole
        # zero byte more when the bits end on a byte boundary
        assert sdk_rle[:len(rle)] == rle and set(sdk_rle[len(rle):]) <= {0}
        rgba = np.array(sdk_values, dtype=np.uint8).reshape(*mask.shape, 4)
        assert (rgba == (mask[:, :, None] * 255)).all()  # every channel 255 on the mask, 0 off it
        assert (decode_mask(sdk_rle, *mask.shape) == mask).all()


def test_literal_blocks_of_the_sdks_encoder_decode(labelstudio: Installation) -> None:
    """Editor masks carry anti-aliased alpha: runs of one value, which encoders write as literal blocks."""
    rng = np.random.default_rng(3)
    values = rng.integers(0, 256, 4 * 300).astype(np.uint8)
    values[400:800] = 255  # and a long run among them
    sdk_rle = labelstudio.run_python(SDK, [{"do": "encode", "values": values.tolist()}])[0]
    assert (decode(sdk_rle) == values).all()
    assert (decode(encode(values)) == values).all()


def test_literal_blocks_of_several_values() -> None:
    """`rle-pack` (the editor's encoder) groups consecutive single values into one literal block; the SDK's
    encoder never does, so this stream is written bit by bit here, from the format."""
    bits = f"{7:032b}{8 - 1:05b}" + "".join(f"{w - 1:04b}" for w in (3, 4, 8, 16))
    bits += "0" + "00" + f"{3 - 1:03b}" + "".join(f"{v:08b}" for v in (10, 200, 7))  # 3 literal values
    bits += "1" + "01" + f"{4 - 1:04b}" + f"{255:08b}"  # then 4 times 255, with the 4-bit width
    bits += "0" * (-len(bits) % 8)
    rle = [int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)]
    assert decode(rle).tolist() == [10, 200, 7, 255, 255, 255, 255]


def test_alpha_decides_membership() -> None:
    """A pixel is in from half alpha up (the editor's anti-aliased stroke edges are partly transparent)."""
    rgba = np.zeros((1, 4, 4), dtype=np.uint8)
    rgba[0, :, 3] = [0, 127, 128, 255]
    assert decode_mask(encode(rgba), 1, 4).tolist() == [[False, False, True, True]]


def test_a_large_mask(labelstudio: Installation) -> None:
    """4000x3000 with round blobs and a full-width band: exact both ways, and the SDK reads ours."""
    yy, xx = np.ogrid[:3000, :4000]
    mask = np.zeros((3000, 4000), bool)
    for cx, cy, r in [(1000, 800, 500), (2500, 2000, 700), (3500, 500, 300)]:
        mask |= (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
    mask[1200:1300] ^= True
    rle = encode_mask(mask)
    assert (decode_mask(rle, 3000, 4000) == mask).all()
    code = SDK.replace("print(json.dumps(out))", "print(json.dumps([int(np.count_nonzero(v)) for v in out]))")
    nonzero = labelstudio.run_python(code, [{"do": "decode", "rle": rle}])[0]
    assert nonzero == 4 * int(mask.sum())


def test_broken_streams_are_refused() -> None:
    rle = encode_mask(np.eye(10, dtype=bool))
    with pytest.raises(ValueError, match="ends after"):
        decode(rle[:-1])
    with pytest.raises(ValueError, match="header"):
        decode(rle[:5])
    with pytest.raises(ValueError, match="RGBA image"):
        decode_mask(rle, 10, 11)
