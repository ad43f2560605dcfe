"""`peftbert predict`: load a tuned run (full or PEFT) and classify texts or a file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from .errors import UserError
from .metrics import classification_metrics, headline


def load_run(run_dir: Path):
    """(model, tokenizer, info) for a finished run; PEFT runs load through plain peft.PeftModel."""
    from .models import load_classifier, load_tokenizer, resolve_model

    run_dir = Path(run_dir)
    mpath = run_dir / "metrics.json"
    if not mpath.is_file():
        raise UserError(f"{run_dir} is not a finished peftbert run (no metrics.json); pass a `tune --output` dir")
    info = json.loads(mpath.read_text())
    id2label = dict(enumerate(info["label_names"]))
    tokenizer = load_tokenizer(str(run_dir))
    if (run_dir / "adapter_config.json").is_file():
        from .methods import bottleneck  # noqa: F401  (registers the adapter's PEFT type before loading)
        from peft import PeftModel

        base_path = info["model_path"] if Path(info["model_path"]).exists() else resolve_model(info["model"])
        model = PeftModel.from_pretrained(load_classifier(base_path, id2label), str(run_dir))
    else:
        model = load_classifier(str(run_dir), id2label)
    return model.eval(), tokenizer, info


@torch.no_grad()
def predict_proba(model, tokenizer, texts, pairs=None, batch_size=64, max_length=512):
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], pairs[i:i + batch_size] if pairs else None, truncation=True,
                        max_length=max_length, padding=True, return_tensors="pt")
        out.append(torch.softmax(model(**enc).logits.float(), -1))
    return torch.cat(out) if out else torch.empty(0)


def run_predict(run_dir, *, texts=None, file=None, text_column=None, text_pair_column=None, label_column=None,
                output=None, batch_size=64):
    import yaml

    from .data.readers import read_table
    from .data.frames import map_labels, pick_column

    if not texts and not file:
        raise UserError("nothing to classify: pass --text \"...\" (repeatable) or --file PATH")
    if output and not output.endswith((".jsonl", ".csv")):
        raise UserError(f"--output must end in .jsonl or .csv, got {output}")
    model, tokenizer, info = load_run(Path(run_dir))
    names = info["label_names"]
    max_length = yaml.safe_load((Path(run_dir) / "recipe.yaml").read_text())["data"]["max_length"]
    pairs, gold = None, None
    if file:
        df = read_table(file)
        col = pick_column(df, text_column, ("text", "sentence", "sentence1"), "text", file)
        texts = df[col].astype(str).tolist()
        if text_pair_column:
            if text_pair_column not in df.columns:
                raise UserError(f"column {text_pair_column!r} not in {file}; pass --text-pair-column")
            pairs = df[text_pair_column].astype(str).tolist()
        label_col = label_column or ("label" if "label" in df.columns else None)
        if label_col:
            if label_col not in df.columns:
                raise UserError(f"column {label_col!r} not in {file}; pass --label-column")
            gold = map_labels(df[label_col], names, file)
    probs = predict_proba(model, tokenizer, list(texts), pairs, batch_size, max_length)
    rows = [{"text": t, "label": names[int(p.argmax())], **{f"p_{n}": round(float(p[j]), 6) for j, n in enumerate(names)}}
            for t, p in zip(texts, probs)]
    _write(rows, output)
    if gold is not None:
        m = classification_metrics(gold, probs.argmax(-1).numpy(), names)
        print(f"scored {len(gold)} labelled rows: {headline(m)}", file=sys.stderr)
        return m
    return None


def _write(rows, output):
    if output and output.endswith(".csv"):
        import pandas as pd
        pd.DataFrame(rows).to_csv(output, index=False)
    elif output:
        Path(output).write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        for r in rows:
            print(json.dumps(r))
