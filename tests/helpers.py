"""Build configs for tests without the CLI."""

from peftbert.config import build_config, deep_merge, parse_set
from peftbert.methods import method_configs


def make_config(model, files, method="lora", output=None, sets=()):
    """A fast config on the tiny model and toy files; `sets` are CLI-style overrides like 'train.lr=1e-3'."""
    cli = {"model": str(model), "method": method,
           "train": {"epochs": 2, "batch_size": 16, "precision": "no", "log_every": 5},
           "data": {"train_file": str(files["train"]), "validation_file": str(files["validation"]),
                    "test_file": str(files["test"]), "max_length": 16}}
    if output:
        cli["output"] = str(output)
    cli = deep_merge(cli, parse_set(list(sets)))
    return build_config(None, cli, method_configs())
