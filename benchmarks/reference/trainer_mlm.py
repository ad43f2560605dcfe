"""run_mlm.py --line_by_line, reduced to what matters for speed: each non-empty line of the corpus is one
example (truncated to --max-length), DataCollatorForLanguageModeling pads each random batch and masks 15%,
BertForMaskedLM scores every position, transformers.Trainer trains. The reference for `peftbert adapt`.

Prints one JSON line: training seconds and real (non-padding) tokens per second, counted in the collator.
"""

import argparse
import gzip
import json

from datasets import Dataset
from transformers import AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer, TrainingArguments

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--corpus", required=True)
p.add_argument("--max-steps", type=int, required=True)
p.add_argument("--batch-size", type=int, default=32)
p.add_argument("--max-length", type=int, default=128)
p.add_argument("--lr", type=float, default=1e-4)
p.add_argument("--bf16", action="store_true")
p.add_argument("--output", required=True)
args = p.parse_args()

opener = gzip.open if args.corpus.endswith(".gz") else open
with opener(args.corpus, "rt", encoding="utf-8") as f:
    lines = [line.strip() for line in f if line.strip()]
tokenizer = AutoTokenizer.from_pretrained(args.model)
model = AutoModelForMaskedLM.from_pretrained(args.model)
ds = Dataset.from_dict({"text": lines}).map(
    lambda b: tokenizer(b["text"], truncation=True, max_length=args.max_length, return_special_tokens_mask=True),
    batched=True, remove_columns=["text"])


class Counting(DataCollatorForLanguageModeling):
    tokens = 0

    def __call__(self, features, *a, **k):
        batch = super().__call__(features, *a, **k)
        Counting.tokens += int(batch["attention_mask"].sum())
        return batch


training_args = TrainingArguments(
    output_dir=args.output, per_device_train_batch_size=args.batch_size, max_steps=args.max_steps,
    learning_rate=args.lr, warmup_steps=0.06, weight_decay=0.01, bf16=args.bf16, use_cpu=True,
    save_strategy="no", eval_strategy="no", report_to=[], logging_steps=50, dataloader_num_workers=0)
trainer = Trainer(model=model, args=training_args, train_dataset=ds,
                  data_collator=Counting(tokenizer, mlm_probability=0.15))
result = trainer.train()
seconds = result.metrics["train_runtime"]
print(json.dumps({"train_seconds": seconds, "tokens": Counting.tokens, "tokens_per_second": Counting.tokens / seconds}))
