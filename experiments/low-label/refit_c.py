"""The head refit's L2 penalty, chosen on a development set (dev_split.py), never on test:

    python experiments/low-label/refit_c.py ARMS.json OUT.jsonl DEV_DIR

Each arm is a tune run with train.head_refit (as select_recipe.py runs it, its data's test_file the development
set). After training, before the refit, the trained encoder's features of the training rows fit a logistic
regression at each C below, as probe.probe_head fits it, and each is scored on the development rows: one line per
(arm, C) in OUT.jsonl, with the run's own development score after its configured refit (`run_dev_f1`). Training
once per arm and seed and sweeping C on its features costs one run where a run per C would cost seven.
"""

import json
import sys

from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

import peftbert.commands.tune as tune
from peftbert.probe import head_features

C_GRID = [0.003, 0.01, 0.03, 0.1, 0.3, 1, 10]


def sweep_before_refit(arms_file: str, out: str, dev_dir: str, score, recipe: str | None = None,
                       pinned: dict | None = None) -> None:
    """Train each arm of ARMS.json once; just before its head refit, `score(model, tokenizer, train, dev, cfg)` gives
    rows (each with dev_f1), appended to OUT.jsonl with the arm, N, seed and the run's own score after its refit.
    `recipe` and `pinned` (train.* values) are applied to every arm. select_wise.py sweeps with it too."""
    preflight, refit_head, seen = tune.preflight, tune.refit_head, {}

    def capture(cfg):
        checked = preflight(cfg)
        seen["task"] = checked[0]
        return checked

    def sweep(run, model, tokenizer, train, cfg):
        seen["rows"] = score(model, tokenizer, train, seen["task"].test, cfg)
        return refit_head(run, model, tokenizer, train, cfg)

    tune.preflight, tune.refit_head = capture, sweep
    for name, values in json.loads(open(arms_file).read().replace("{dev}", dev_dir)).items():
        values["train"].update(pinned or {})
        cfg = tune.tune_config(recipe=recipe, values=values)
        m = tune.run_tune(cfg, overwrite=True, save_weights=False, log=lambda *a: None)
        with open(out, "a") as f:
            for row in seen["rows"]:
                row = {"arm": name, "n": cfg.data.train_per_class, "seed": m["seed"], **row,
                       "run_dev_f1": m["test"]["macro_f1"]}
                print(json.dumps(row), flush=True)
                f.write(json.dumps(row) + "\n")


def refit_at_each_c(model, tokenizer, train, dev, cfg) -> list[dict]:
    x, x_dev = (head_features(model, tokenizer, f, cfg.data.max_length) for f in (train, dev))
    rows = []
    for c in C_GRID:
        fit = LogisticRegression(C=c, max_iter=5000, random_state=cfg.train.seed).fit(x, train["label"])
        rows.append({"c": c, "dev_f1": f1_score(dev["label"], fit.predict(x_dev), average="macro")})
    return rows


if __name__ == "__main__":
    sweep_before_refit(*sys.argv[1:4], refit_at_each_c)
