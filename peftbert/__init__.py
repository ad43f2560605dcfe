"""peftbert: parameter-efficient fine-tuning and domain-adaptive pretraining for BERT-family encoders.

Python API (the same configs and runs as the CLI): `peftbert.tune(...)`, `peftbert.adapt(...)`,
`peftbert.load(run_dir).classify(texts)`; see peftbert/api.py (it imports torch only when called).
"""

from .api import Classifier, adapt, load, tune
from .version import __version__

__all__ = ["Classifier", "adapt", "load", "tune", "__version__"]
