"""The low-label recipe's choice, on validation only (no test set is read): each arm is a tune run.

    python experiments/low-label/select_recipe.py ARMS.json OUT.jsonl [DEV_DIR]

ARMS.json maps an arm name to tune settings (as --set would give them); each finished arm appends one line to
OUT.jsonl: its validation macro-F1 and accuracy, best step, steps. The arms run are in results/selection/.
An arm whose data names a test_file (dev_split.py's dev.csv, rows of the task's training file that no arm trains
or validates on, never the task's test split) is scored on it too: `dev_f1`, free of the optimism of a score on
the validation rows that chose the arm's checkpoint. `{dev}` in ARMS.json stands for DEV_DIR.
"""

import json
import sys

from peftbert.commands.tune import run_tune, tune_config


def main(arms_file: str, out: str, dev_dir: str = "") -> None:
    for name, values in json.loads(open(arms_file).read().replace("{dev}", dev_dir)).items():
        dev = bool(values.get("data", {}).get("test_file"))
        m = run_tune(tune_config(values=values), overwrite=True, score_test=dev, save_weights=False,
                     log=lambda *a: None)
        row = {"arm": name, "seed": m["seed"], "val_f1": m["validation"]["macro_f1"],
               "val_acc": m["validation"]["accuracy"], "best_step": m["best_step"], "steps": m["steps"],
               **({"dev_f1": m["test"]["macro_f1"], "dev_acc": m["test"]["accuracy"]} if dev else {})}
        print(json.dumps(row), flush=True)
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
