"""The plain way to classify a file with a tuned model: transformers.pipeline("text-classification").

`--model` is a plain checkpoint directory (speed.py merges the LoRA run into one first). Prints one JSON
line: load and inference seconds, texts per second (steady state), and writes the labels to --output.
"""

import argparse
import json
import time

t0 = time.perf_counter()
import pandas as pd  # noqa: E402
from transformers import pipeline  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--file", required=True)
p.add_argument("--output", required=True)
p.add_argument("--batch-size", type=int, default=None, help="pipeline batch size (default: the pipeline's, 1)")
args = p.parse_args()

texts = pd.read_csv(args.file)["text"].astype(str).tolist()
import torch  # noqa: E402

classify = pipeline("text-classification", model=args.model, device=0 if torch.cuda.is_available() else -1)
t1 = time.perf_counter()
kwargs = {"batch_size": args.batch_size} if args.batch_size else {}
results = classify(texts, truncation=True, **kwargs)
t2 = time.perf_counter()
with open(args.output, "w") as f:
    f.writelines(json.dumps({"label": r["label"]}) + "\n" for r in results)
print(json.dumps({"load_seconds": t1 - t0, "inference_seconds": t2 - t1, "texts": len(texts),
                  "texts_per_second": len(texts) / (t2 - t1)}))
