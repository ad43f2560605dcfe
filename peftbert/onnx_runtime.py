"""Serving an ONNX graph with ONNX Runtime: a session that answers like a transformers classifier.

Used by `export --format onnx` (its parity check and speed comparison) and by `predict` on an ONNX export.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from .errors import UserError


def check_onnx_installed(what: str, packages=("onnx", "onnxscript", "onnxruntime")) -> None:
    import importlib.util

    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise UserError(f"{what} needs {', '.join(missing)}: pip install 'peftbert[onnx]'")


class OnnxClassifier:
    """An ONNX Runtime session that answers like a transformers classifier (`.config`, `(**batch).logits`),
    so predict's length-sorted batching serves it unchanged."""

    def __init__(self, path: Path, config):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()  # the same cores PyTorch uses, for a fair figure
        from .artifacts import onnx_session  # a graph ONNX Runtime cannot parse: one line naming it

        self.session = onnx_session(Path(path), lambda: ort.InferenceSession(str(path), opts,
                                                                             providers=["CPUExecutionProvider"]))
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.config = config

    def __call__(self, **batch):
        feed = {n: batch[n].numpy() for n in self.inputs}
        return SimpleNamespace(logits=torch.from_numpy(self.session.run(["logits"], feed)[0]))
