"""The script a practitioner writes without peftbert: transformers.Trainer + peft, library defaults.

The reference `benchmarks/speed.py` times `peftbert tune` against: DataCollatorWithPadding, the Trainer's
default (random) sampler, the same model, data, epochs, batch size, learning rate, warm-up, weight decay,
max length and precision. Prints one JSON line: training time and throughput, test accuracy and macro-F1.
"""

import argparse
import json

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from sklearn.metrics import f1_score
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments, set_seed)

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--train", required=True)
p.add_argument("--test", required=True)
p.add_argument("--method", choices=["full", "lora"], required=True)
p.add_argument("--epochs", type=float, default=1)
p.add_argument("--lr", type=float, required=True)
p.add_argument("--batch-size", type=int, default=32)
p.add_argument("--max-length", type=int, default=128)
p.add_argument("--bf16", action="store_true")
p.add_argument("--seed", type=int, default=42)
p.add_argument("--output", required=True)
p.add_argument("--unseeded-init", action="store_true", help="build the model before seeding (this script's old way)")
args = p.parse_args()

# seeded before the model is built, as transformers' examples/run_glue.py does: otherwise the new head is torch's
# default-seed draw, one init shared by every --seed (experiments/short-regime-batching: trainer vs trainer-unseeded)
if not args.unseeded_init:
    set_seed(args.seed)
tokenizer = AutoTokenizer.from_pretrained(args.model)
train, test = pd.read_csv(args.train), pd.read_csv(args.test)
model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=3)
if args.method == "lora":
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.1,
                                             target_modules=["query", "value"]))


def encode(batch):
    return tokenizer(batch["text"], truncation=True, max_length=args.max_length)


train_ds = Dataset.from_pandas(train).map(encode, batched=True, remove_columns=["text"])
test_ds = Dataset.from_pandas(test).map(encode, batched=True, remove_columns=["text"])
training_args = TrainingArguments(
    output_dir=args.output, per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=128,
    num_train_epochs=args.epochs, learning_rate=args.lr, warmup_steps=0.06,  # below 1: a ratio of the steps
    weight_decay=0.01, bf16=args.bf16, save_strategy="no", eval_strategy="no", report_to=[],
    use_cpu=not torch.cuda.is_available(),  # on the GPU where there is one, as peftbert tune
    logging_steps=50, seed=args.seed)
trainer = Trainer(model=model, args=training_args, train_dataset=train_ds,
                  data_collator=DataCollatorWithPadding(tokenizer))
result = trainer.train()
predictions = trainer.predict(test_ds).predictions.argmax(-1)
labels = np.asarray(test["label"])
print(json.dumps({"train_seconds": result.metrics["train_runtime"],
                  "train_samples_per_second": result.metrics["train_samples_per_second"],
                  "test_accuracy": float((predictions == labels).mean()),
                  "test_macro_f1": float(f1_score(labels, predictions, average="macro"))}))
