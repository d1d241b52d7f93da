"""MobileSAM (examples/mobilesam): the first prompt on an image against the next prompts on the same image.

    python benchmarks/bench_mobilesam.py [--rounds 10] [--prompts 5] [--threads N] [--json results.json]

The first prompt on an image runs the image encoder and the prompt decoder; the next prompts on it find the
embedding in the model's cache and run only the decoder. Each round takes a new image (the astronaut with
one pixel changed: another content hash, the same work) and times `predict` for its first prompt, then for
`--prompts` more (a click on the face, on the helmet, the suit with a negative click on its patch, a box
around the face, ...), so the two kinds of call are interleaved round by round and a busy machine slows
them alike. It reports medians and their ratio (the issue's goal: next prompts >= 10x faster than the
first), the encoder and decoder alone, and the cache's hit ratio from its Prometheus counters. Nothing is
asserted.

It needs the `sam` extra and the ONNX files (`python -m examples.mobilesam.build`; this script runs that
build when they are missing: a few minutes, once).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from prometheus_client import REGISTRY

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge import Box, Context, Prompts  # noqa: E402
from bridge.samples import read  # noqa: E402
from examples.mobilesam import build  # noqa: E402
from examples.mobilesam.model import MobileSAM, decoder_prompt  # noqa: E402

PROMPTS = [  # on bridge/samples/astronaut.jpg (384 x 384)
    Prompts(positive=((165, 85),)),  # the face
    Prompts(positive=((320, 300),)),  # the helmet
    Prompts(positive=((100, 250),), negative=((130, 290),)),  # the suit without its patch
    Prompts(box=Box(124, 48, 88, 92)),  # a box around the face
    Prompts(positive=((300, 100),)),  # the shuttle
    Prompts(box=Box(200, 250, 184, 134), positive=((320, 300),)),  # the helmet, box and click
]


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def timed(call, *args) -> float:
    started = time.perf_counter()
    call(*args)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--prompts", type=int, default=5, help="next prompts per image, after the first")
    parser.add_argument("--threads", type=int, help="onnxruntime threads per call (default: the model's)")
    parser.add_argument("--onnx-dir", type=Path, help="the build's folder (default: the build's default)")
    parser.add_argument("--json", type=Path, help="write every timing here")
    args = parser.parse_args(argv)

    folder = build.build(args.onnx_dir)
    model = MobileSAM(onnx_dir=str(folder), cache_size=4, threads=args.threads)
    astronaut = cv2.cvtColor(cv2.imdecode(np.frombuffer(read("astronaut.jpg"), np.uint8), cv2.IMREAD_COLOR),
                             cv2.COLOR_BGR2RGB)
    model.predict(astronaut, Context(prompts=PROMPTS[0]))  # warm-up: onnxruntime's first runs allocate

    hits0 = counter("mobilesam_embedding_cache_hits_total")
    misses0 = counter("mobilesam_embedding_cache_misses_total")
    first, following, encode, decode = [], [], [], []
    for round_ in range(args.rounds):
        image = astronaut.copy()
        image[round_ // 384, round_ % 384, 0] ^= 1  # one pixel changed: a new image each round
        first.append(timed(model.predict, image, Context(prompts=PROMPTS[0])))
        for i in range(args.prompts):
            prompts = PROMPTS[1 + i % (len(PROMPTS) - 1)]
            following.append(timed(model.predict, image, Context(prompts=prompts)))
        # the two steps alone, on the same image, for the table
        started = time.perf_counter()
        embedding = model.encode(image)
        encode.append(time.perf_counter() - started)
        prompt = decoder_prompt(PROMPTS[1], image.shape[:2], model.max_points)
        decode.append(timed(model.decode, embedding, prompt))
    hits = counter("mobilesam_embedding_cache_hits_total") - hits0
    misses = counter("mobilesam_embedding_cache_misses_total") - misses0

    def ms(values: list[float], q: float = 0.5) -> float:
        return 1000 * float(np.quantile(values, q))

    ratio = statistics.median(first) / statistics.median(following)
    threads = model.encoder.get_session_options().intra_op_num_threads
    print(f"MobileSAM on onnxruntime, {threads} threads, astronaut 384x384, {args.rounds} rounds x "
          f"(1 first + {args.prompts} next prompts); load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")
    print()
    print("| call | median ms | p10 ms | p90 ms | n |")
    print("| --- | --- | --- | --- | --- |")
    for name, values in (("first prompt (encode + decode)", first), ("next prompts (cached: decode)", following),
                         ("encoder alone", encode), ("decoder alone", decode)):
        print(f"| {name} | {ms(values):.0f} | {ms(values, 0.1):.0f} | {ms(values, 0.9):.0f} | {len(values)} |")
    print()
    print(f"first / next (medians): {ratio:.1f}x (goal: >= 10x)")
    print(f"embedding cache: {hits:.0f} hits, {misses:.0f} misses: hit ratio {hits / (hits + misses):.2f}")
    if args.json:
        args.json.write_text(json.dumps({
            "threads": threads, "rounds": args.rounds, "prompts": args.prompts, "ratio": ratio,
            "hits": hits, "misses": misses, "first_s": first, "next_s": following, "encode_s": encode,
            "decode_s": decode,
        }, indent=1))


if __name__ == "__main__":
    main()
