"""What does `bridge prelabel` cost next to a plain loop over the model? 200 images, both ways, same run.

    python benchmarks/bench_prelabel.py [--images 200] [--rounds 3] [--concurrency 1 2]

The images are 200 JPEG files (crops and flips of `skimage.data.astronaut()`, 256x256 to 512x512) in a
temporary folder; the model is the default face detector (examples/faces.py).

- loop (the baseline): for each file, read it, decode it with the bridge's `decode_image` and call
  `FaceDetector.predict`, one after the other in this process: what a user's own script would do;
- prelabel: `Prelabel.run` (what `bridge prelabel` runs after loading the model) over the same folder into a
  fresh output folder, writing V7, Labelbox and Ango files and journaling every item (fsync), with the
  manifest's `limits.concurrency` set to each value given.

The model is built once and shared, so neither side pays for loading it. The paths are interleaved round by
round; each row shows the median time over rounds, items per second, and the ratio to the loop's median.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.commands.prelabel import Prelabel, build_exporters, read_items  # noqa: E402
from bridge.core.manifest import (
    PROJECT_MANIFEST,
    load_manifest,  # noqa: E402
)
from bridge.core.media import MediaLimits, decode_image  # noqa: E402
from bridge.core.model import Context  # noqa: E402
from bridge.core.service import Service  # noqa: E402
from bridge.platforms.registry import discover

PLATFORMS = "v7,labelbox,ango"


def make_images(folder: Path, count: int) -> None:
    from skimage import data

    astronaut = data.astronaut()
    rng = np.random.default_rng(0)
    for i in range(count):
        size = int(rng.integers(256, 513))
        y, x = rng.integers(0, 513 - size, size=2)
        crop = astronaut[y:y + size, x:x + size]
        if i % 2:
            crop = crop[:, ::-1]
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(crop)).save(buffer, "JPEG", quality=90)
        (folder / f"img-{i:04d}.jpg").write_bytes(buffer.getvalue())


def plain_loop(model, files: list[Path], params: dict) -> float:
    start = time.perf_counter()
    limits = MediaLimits()
    for path in files:
        image = decode_image(path.read_bytes(), limits)
        model.predict(image, Context(params=params))
    return time.perf_counter() - start


def prelabel(manifest, model, folder: Path, out: Path, concurrency: int, adapters: dict) -> float:
    manifest = manifest.model_copy(update={"limits": manifest.limits.model_copy(update={"concurrency": concurrency})})
    exporters = build_exporters(PLATFORMS, [], manifest, model, adapters)
    items = read_items(folder)

    async def run() -> float:
        service = Service(manifest, model)
        start = time.perf_counter()
        result = await Prelabel(service, exporters, out, stream=io.StringIO()).run(items)
        elapsed = time.perf_counter() - start
        await service.aclose()
        assert result.done == len(items), result
        return elapsed

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    manifest = load_manifest(PROJECT_MANIFEST)
    model = manifest.build_model()
    params = manifest.resolve_params({})
    adapters = discover()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        make_images(folder, args.images)
        files = sorted(folder.iterdir())
        times: dict[str, list[float]] = {"loop": []}
        for round_number in range(args.rounds):
            times["loop"].append(plain_loop(model, files, params))
            for concurrency in args.concurrency:
                out = Path(tmp) / f"out-{round_number}-{concurrency}"
                times.setdefault(f"prelabel, concurrency {concurrency}", []).append(
                    prelabel(manifest, model, folder, out, concurrency, adapters))
        base = statistics.median(times["loop"])
        print(f"{args.images} images, {args.rounds} rounds, {PLATFORMS} written by prelabel")
        print("| path | median | images/s | x loop |\n| --- | ---: | ---: | ---: |")
        for name, seconds in times.items():
            median = statistics.median(seconds)
            print(f"| {name} | {median:.2f} s | {args.images / median:.1f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
