"""peftbert: parameter-efficient fine-tuning and domain-adaptive pretraining for BERT-family encoders.

Python API (the same configs and runs as the CLI): `peftbert.tune(...)`, `peftbert.adapt(...)`,
`peftbert.load(run_dir).classify(texts)`; see peftbert/api.py (it imports torch only when called).
"""

__version__ = "0.1.0"

from .api import Classifier, adapt, load, tune  # noqa: E402

__all__ = ["Classifier", "adapt", "load", "tune"]
