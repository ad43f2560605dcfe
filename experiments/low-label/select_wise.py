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

import sys

from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from transformers import AutoModel

from peftbert.config import PROBE_C
from peftbert.models import resolve_model
from peftbert.probe import head_features
from refit_c import sweep_before_refit  # the arm loop: train once, score rows just before the refit

ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]


def mix(trained: dict, start: dict, alpha: float) -> dict:
    return {k: alpha * v + (1 - alpha) * start[k] if k in start and v.is_floating_point() else v
            for k, v in trained.items()}


def refit_at_each_alpha(model, tokenizer, train, dev, cfg) -> list[dict]:
    encoder, rows = model.base_model, []
    trained = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    start = AutoModel.from_pretrained(resolve_model(cfg.model)).state_dict()
    missing = [k for k in trained if k not in start and not k.startswith("pooler.")]
    assert not missing, f"starting weights lack {missing[:3]}"
    for alpha in ALPHAS:
        encoder.load_state_dict(mix(trained, start, alpha))
        x, x_dev = (head_features(model, tokenizer, f, cfg.data.max_length) for f in (train, dev))
        fit = LogisticRegression(C=PROBE_C, max_iter=5000, random_state=cfg.train.seed).fit(x, train["label"])
        rows.append({"alpha": alpha, "dev_f1": f1_score(dev["label"], fit.predict(x_dev), average="macro")})
    encoder.load_state_dict(trained)
    return rows


if __name__ == "__main__":
    # the run as trained (wise 1): the sweep does the mixing, whatever the recipe's own value
    sweep_before_refit(*sys.argv[1:4], refit_at_each_alpha, recipe="low-label", pinned={"wise": 1.0})
