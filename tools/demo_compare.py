"""The end of `make demo`: the tuned run's test scores beside the baselines every bench table uses.

    python tools/demo_compare.py RUN_DIR

The baselines (majority class, TF-IDF + logistic regression with C chosen on validation) come from
peftbert/baselines.py, fitted on the rows the run trained on (its recipe.yaml: task, validation carve, seed) and
scored on its test split; they are written to RUN_DIR/baselines.json, as `peftbert bench` writes them.
"""

import json
import sys
from pathlib import Path

from peftbert.baselines import write_baselines
from peftbert.config import build_config
from peftbert.errors import UserError
from peftbert.methods import method_configs


def main(run: Path) -> None:
    if not (run / "metrics.json").is_file() or not (run / "recipe.yaml").is_file():
        raise UserError(f"{run}: no metrics.json and recipe.yaml; give a finished `peftbert tune` run")
    m = json.loads((run / "metrics.json").read_text())
    cfg = build_config(str(run / "recipe.yaml"), {}, method_configs())
    write_baselines(cfg, run, log=lambda _: None)
    baselines = json.loads((run / "baselines.json").read_text())
    if baselines["split"] != "test" or not m.get("test"):
        raise UserError(f"{run}: the run has no test split to compare on; tune on a task with one")
    rows = [(f"peftbert {m['method']} from {Path(m['model']).name} ({m['trainable_percent']:.1f}% trained)", m["test"]),
            *baselines["scores"].items()]
    print(f"\n{m['task']}, test set of {m['test']['n']} texts")
    print(f"  {'':44s} accuracy  macro-F1")
    for name, r in rows:
        print(f"  {name:44s} {r['accuracy']:.4f}    {r['macro_f1']:.4f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tools/demo_compare.py RUN_DIR")
    try:
        main(Path(sys.argv[1]))
    except UserError as e:
        sys.exit(f"error: {e}")
