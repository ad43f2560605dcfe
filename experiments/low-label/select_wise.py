"""Weight-space ensembling (WiSE-FT, Wortsman et al. 2022) of the low-label recipe, on development sets only:

    python experiments/low-label/select_wise.py ARMS.json OUT.jsonl DEV_DIR

Each arm is a tune run of the recipe at train.wise 1 (as select_recipe.py runs it, its data's test_file the
development set).
After training, before the refit, the encoder's weights are set to ALPHA x trained + (1 - ALPHA) x the starting
model's, for each ALPHA below, and the head is fitted on those features as the refit fits it (probe.probe_head's
logistic regression at its C) and scored on the development rows: one line per (arm, ALPHA) in OUT.jsonl, with
the run's own development score after its configured refit (`run_dev_f1`; ALPHA 1 is the recipe, 0 the probe).
Training once per arm and seed and sweeping ALPHA on it costs one run where a run per ALPHA would cost five.
The mix here is peftbert/wise.py's arithmetic on the encoder alone (the head is refitted anyway), as it ran.
"""

import json
import sys

import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from transformers import AutoModel

import peftbert.commands.tune as tune
from peftbert.config import PROBE_C
from peftbert.models import resolve_model
from peftbert.probe import head_features

ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]


def mix(trained: dict, start: dict, alpha: float) -> dict:
    return {k: alpha * v + (1 - alpha) * start[k] if k in start and v.is_floating_point() else v
            for k, v in trained.items()}


def main(arms_file: str, out: str, dev_dir: str) -> None:
    preflight, refit_head, seen = tune.preflight, tune.refit_head, {}

    def capture(cfg):
        checked = preflight(cfg)
        seen["task"] = checked[0]
        return checked

    def sweep(run, model, tokenizer, train, cfg):
        dev, encoder = seen["task"].test, model.base_model
        trained = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
        start = AutoModel.from_pretrained(resolve_model(cfg.model)).state_dict()
        missing = [k for k in trained if k not in start and not k.startswith("pooler.")]
        assert not missing, f"starting weights lack {missing[:3]}"
        for alpha in ALPHAS:
            encoder.load_state_dict(mix(trained, start, alpha))
            x, x_dev = (head_features(model, tokenizer, f, cfg.data.max_length) for f in (train, dev))
            fit = LogisticRegression(C=PROBE_C, max_iter=5000, random_state=cfg.train.seed).fit(x, train["label"])
            seen["rows"].append({"alpha": alpha, "dev_f1": f1_score(dev["label"], fit.predict(x_dev), average="macro")})
        encoder.load_state_dict(trained)
        return refit_head(run, model, tokenizer, train, cfg)

    tune.preflight, tune.refit_head = capture, sweep
    for name, values in json.loads(open(arms_file).read().replace("{dev}", dev_dir)).items():
        seen["rows"] = []
        values["train"]["wise"] = 1.0  # the run as trained: the sweep mixes (the recipe's own value aside)
        cfg = tune.tune_config(recipe="low-label", values=values)
        m = tune.run_tune(cfg, overwrite=True, save_weights=False, log=lambda *a: None)
        with open(out, "a") as f:
            for row in seen["rows"]:
                row = {"arm": name, "n": cfg.data.train_per_class, "seed": m["seed"], **row,
                       "run_dev_f1": m["test"]["macro_f1"]}
                print(json.dumps(row), flush=True)
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
