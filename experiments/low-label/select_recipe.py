"""The low-label recipe's choice, on validation only (no test set is read): each arm is a tune run.

    python experiments/low-label/select_recipe.py ARMS.json OUT.jsonl

ARMS.json maps an arm name to tune settings (as --set would give them); each finished arm appends one line to
OUT.jsonl: its validation macro-F1 and accuracy, best step, steps. The arms run are in results/selection/.
"""

import json
import sys

from peftbert.commands.tune import run_tune, tune_config


def main(arms_file: str, out: str) -> None:
    for name, values in json.loads(open(arms_file).read()).items():
        m = run_tune(tune_config(values=values), overwrite=True, score_test=False, save_weights=False,
                     log=lambda *a: None)
        row = {"arm": name, "seed": m["seed"], "val_f1": m["validation"]["macro_f1"],
               "val_acc": m["validation"]["accuracy"], "best_step": m["best_step"], "steps": m["steps"]}
        print(json.dumps(row), flush=True)
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
