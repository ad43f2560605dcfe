"""peftbert: parameter-efficient fine-tuning and domain-adaptive pretraining for BERT-family encoders."""

__version__ = "0.1.0"
