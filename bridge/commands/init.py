'''`bridge init`: a starter model file and a manifest with a section for every platform, ready to serve.

The manifest reads every secret from the environment with an empty default, so `bridge check` and
`bridge serve` accept it as written; the Labelbox and Ango endpoints refuse every call until their secret
is set. Existing files are never overwritten.
'''

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

MODEL = '''\
"""A starter model: one box around the bright part of the image. Replace `predict` with your own model.

The bridge builds the model once, at start-up (with `model.params` from manifest.yaml as keyword arguments,
if you add any), then calls `predict` for each request with an (H, W, 3) uint8 RGB array; coordinates are
pixels of that array, and `context.params` holds the request's parameters over the manifest's defaults.
"""

from __future__ import annotations

import numpy as np

from bridge import Box, ClassSpec, Context, ModelSpec, Prediction


class StarterModel:
    spec = ModelSpec(classes=[ClassSpec(name="object", kind="box")])

    def __init__(self) -> None:
        pass  # load weights here: this runs once, at start-up

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        """One box around the pixels at least `brightness` bright (a parameter each request may set)."""
        brightness = context.params["brightness"]
        rows, cols = np.nonzero(image.max(axis=2) >= brightness)
        if rows.size == 0:
            return []
        left, top = int(cols.min()), int(rows.min())
        box = Box(x=left, y=top, w=int(cols.max()) + 1 - left, h=int(rows.max()) + 1 - top)
        return [Prediction("object", box, confidence=rows.size / (box.w * box.h))]
'''

MANIFEST = '''\
# Written by `bridge init`. `bridge check` and `bridge serve` take this file's path.
# Keys and environment variables: `bridge reference`. Secrets come from the environment as ${{NAME}}, never
# from this file.
name: {name}
version: "0.1.0"
description: A starter model, one box around the bright part of the image.

model:
  factory: model.py:StarterModel         # relative to this file, or `package.module:Name`
  # params: {{weights: model.pt}}          # keyword arguments for StarterModel, passed once at start-up

params:                                  # JSON Schema of what a request may set, with defaults
  type: object
  properties:
    brightness:
      type: integer
      minimum: 0
      maximum: 255
      default: 128
      description: Pixels at least this bright (0-255) are inside the box.

platforms:                               # one section per platform to serve
  v7:                                    # GET /v7/classes, POST /v7/infer
    auth:
      method: ${{V7_AUTH_METHOD:-none}}    # none | basic | header
      username: ${{V7_USERNAME:-}}
      password: ${{V7_PASSWORD:-}}
      header: ${{V7_AUTH_HEADER:-X-Auth}}
      secret: ${{V7_SECRET:-}}
  labelbox:                              # POST /labelbox/infer, `Authorization: Bearer <secret>`
    secret: ${{LABELBOX_SECRET:-}}         # empty: every request is refused
  ango:                                  # POST /ango/plugin (REST), or `bridge ango` (Socket.IO)
    plugin_id: ${{ANGO_PLUGIN_ID:-}}
    secret: ${{ANGO_PLUGIN_SECRET:-}}      # empty: every call is refused
'''


def write_starter(folder: Path) -> list[Path]:
    """Write `model.py` and `manifest.yaml` into `folder` (made if needed); FileExistsError if either exists."""
    model, manifest = folder / "model.py", folder / "manifest.yaml"
    for path in (model, manifest):
        if path.exists():
            raise FileExistsError(f"{path} exists: not overwriting it (choose another folder)")
    name = re.sub(r"[^a-z0-9]+", "-", folder.resolve().name.lower()).strip("-") or "my-model"
    folder.mkdir(parents=True, exist_ok=True)
    model.write_text(MODEL, encoding="utf-8")
    manifest.write_text(MANIFEST.format(name=name), encoding="utf-8")
    return [model, manifest]


def add(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("init", help="write a starter model.py and manifest.yaml to start from")
    parser.add_argument("folder", nargs="?", type=Path, default=Path("."),
                        help="where to write them (default: the current folder)")
    parser.set_defaults(func=init)


def init(args: argparse.Namespace) -> int:
    """Write a starter model and manifest, and say what to run next."""
    try:
        model, manifest = write_starter(args.folder)
    except FileExistsError as error:
        print(f"bridge: {error}", file=sys.stderr)
        return 2
    bridge = sys.argv[0] if Path(sys.argv[0]).name == "bridge" else "bridge"  # e.g. .venv/bin/bridge
    print(f"wrote {model} and {manifest}; next:\n"
          f"  {bridge} check {manifest}\n"
          f"  {bridge} serve {manifest} --reload      # restarts when you edit {model.name} or the manifest")
    return 0
