"""The one schema: typed run configuration (its fields are the commands' flags) and YAML recipes.

Every option's name, type, default and help live here, in a dataclass field (methods keep theirs in their
own module). cli_options.py turns the fields into the flags of `tune`, `adapt` and `bench`.

Override order (later wins):
    tune:  dataclass defaults < method preset (recipes/methods/<method>.yaml)
           < recipe (--recipe FILE, default recipes/tune/default.yaml; recipes/tune/low-label.yaml or the probe
           preset for a small training set when no recipe, method, budget, length or lr is named:
           commands/tune.sized_tune_config)
           < CLI flags and --set key=value.
    adapt: dataclass defaults < recipes/adapt/default.yaml (< recipes/adapt/task.yaml when --task is the only
           text source) < --recipe FILE < CLI flags and --set.

A tune recipe is a YAML mapping with top-level run keys (model, method, task, output), a `train:` block
(TrainArgs), a `data:` block (DataArgs) and, per method, a block named after the method (e.g. `lora: {r: 8}`)
validated by that method's config class. An adapt recipe has run keys, `train:`, `adapt:` and `lora:`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from .errors import UserError
from .trackers import TRACKERS, check_available
from .yaml_text import yaml_load  # noqa: F401  (bench and the CLI read YAML values through config)

# a checkout (or editable install) reads the repository's recipes/; a wheel carries them as peftbert/recipes
_HERE = Path(__file__).resolve().parent
REPO_RECIPES = next((p for p in (_HERE / "recipes", _HERE.parent / "recipes") if p.is_dir()), _HERE / "recipes")
RECIPES_DIR = Path(os.environ.get("PEFTBERT_RECIPES", REPO_RECIPES))

PRECISIONS = ("auto", "no", "bf16", "fp16")
# validation metrics that can pick the best checkpoint -> whether greater is better
SELECTION_METRICS = {"macro_f1": True, "accuracy": True, "mcc": True}  # tune: metrics.classification_metrics
MLM_METRICS = {"loss": False, "perplexity": False, "accuracy": True,  # adapt: masked_lm.mlm_metrics
               "probe_macro_f1": True}  # with adapt.probe_task: probe.TaskProbe
SCHEDULERS = ("linear", "cosine", "constant")
# The L2 penalty's inverse strength: 0.01 on MiniLM's mean-pooled states (norm about 4) scored highest on a
# development set of finance tweets at 8 and 32 per class, among 0.003-100 (experiments/low-label); 1 fits a
# few rows exactly (and, as an LP-FT start, leaves fine-tuning nothing to learn from).
PROBE_C = 0.01
HEAD_INITS = ("random", "probe")  # probe: probe.probe_head (linear probing, then fine-tuning: LP-FT)
KEEPS = ("best", "last")  # train.EvalTracker: the weights a run ends with
BATCHING = ("packed", "grouped", "random")  # train.py and data/packing.py say what each does
# train.* settings of tune's task head and its end (train.py, contrastive.py, wise.py and commands/tune.py say what
# each does): adapt has none, so it has no flag for them and refuses a recipe that sets one
HEAD_SETTINGS = ("head_lr_ratio", "contrastive", "contrastive_temperature", "head_refit", "wise")


@dataclass
class TrainArgs:
    epochs: float = field(default=3.0, metadata={"help": "passes over the training set"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many optimizer steps"})
    min_steps: int | None = field(default=None, metadata={
        "help": "train at least this many optimizer steps, adding epochs on small sets (max_steps wins)"})
    head_init: str = field(default="random", metadata={
        "help": "random | probe: start the task head from a logistic regression on the frozen features"})
    batch_size: int = field(default=32, metadata={"help": "examples per device per forward pass"})
    eval_batch_size: int = field(default=128, metadata={"help": "examples per device when evaluating"})
    grad_accum: int = field(default=1, metadata={"help": "forward passes per optimizer step"})
    lr: float = field(default=5e-5, metadata={"help": "peak learning rate"})
    head_lr_ratio: float = field(default=1.0, metadata={
        "help": "the task head's learning rate as a multiple of lr (a new head may learn faster)"})
    layer_lr_decay: float = field(default=1.0, metadata={
        "help": "each encoder layer learns at this multiple of the lr of the one above, embeddings lowest (1 = off)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases/LayerNorm)"})
    warmup_ratio: float = field(default=0.06, metadata={"help": "fraction of steps spent warming up"})
    scheduler: str = field(default="linear", metadata={"help": "decay after warm-up: linear|cosine|constant"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (0 = off)"})
    precision: str = field(default="auto", metadata={"help": "auto|no|bf16|fp16; auto = bf16 where it measures faster"})
    seed: int = field(default=42, metadata={"help": "seed for init, shuffling and dropout"})
    eval_every: int | None = field(default=None, metadata={"help": "evaluate every N steps (default: each epoch)"})
    metric: str = field(default="macro_f1", metadata={"help": "validation metric that picks the best checkpoint"})
    patience: int | None = field(default=None, metadata={"help": "stop after N evaluations without improvement"})
    contrastive: float = field(default=0.0, metadata={
        "help": "weight W of a supervised contrastive loss on the head's input: (1-W) x CE + W x SupCon (0 = off)"})
    contrastive_temperature: float = field(default=0.3, metadata={
        "help": "the contrastive loss's temperature: cosine similarities are divided by it (smaller: sharper)"})
    head_refit: bool = field(default=False, metadata={
        "help": "after training, refit the head as a logistic regression on the trained features (SetFit's last step)"})
    wise: float = field(default=1.0, metadata={
        "help": "full fine-tuning ends at this share of the trained weights, the rest the start's (WiSE-FT; 1 = off)"})
    keep: str = field(default="best", metadata={
        "help": "best | last: end with the best-scoring weights on validation, or the last step's"})
    save_every: int | None = field(default=None, metadata={"help": "save a resumable checkpoint every N steps"})
    log_every: int = field(default=20, metadata={"help": "log training loss every N steps"})
    batching: str = field(default="packed", metadata={
        "help": "packed (random batches without padding) | grouped (texts of one length share a batch) | random"})
    group_size: int = field(default=50, metadata={
        "help": "batching grouped: batches per length-sorted mega-batch (transformers' 50)"})
    report_to: str = field(default="tensorboard", metadata={
        "help": "experiment tracker: tensorboard|wandb|mlflow|none (offline, files in the run directory)"})

    def __post_init__(self):
        check_positive(self, "batch_size", "eval_batch_size", "grad_accum", "log_every", "group_size")
        check_positive(self, "lr", "epochs", "head_lr_ratio", "contrastive_temperature")
        check_positive_or_none(self, "max_steps", "min_steps", "eval_every", "patience", "save_every")
        check_choice(self, "head_init", HEAD_INITS)
        check_choice(self, "keep", KEEPS)
        if self.keep == "last" and self.patience is not None:
            raise UserError("train.patience stops at the best validation score, which train.keep last does not "
                            "keep: drop one of them")
        if not 0 < self.layer_lr_decay <= 1:
            raise UserError(f"train.layer_lr_decay must be in (0, 1], got {self.layer_lr_decay} (1 turns it off)")
        if not 0 <= self.contrastive <= 1:
            raise UserError(f"train.contrastive must be in [0, 1], got {self.contrastive} (0 turns it off)")
        if not 0 <= self.wise <= 1:
            raise UserError(f"train.wise must be in [0, 1], got {self.wise} (1 keeps the trained weights as they are)")
        if self.contrastive == 1 and not self.head_refit:  # the head gets no gradient: it would stay as it began
            raise UserError("train.contrastive 1 trains the encoder alone and leaves the head as it began: add "
                            "--head-refit (fit the head on the trained features), or mix in cross-entropy (< 1)")
        if self.contrastive == 1 and self.keep == "best":  # validation is scored by the untrained head until the refit
            raise UserError("train.contrastive 1 trains no head to score validation with until the refit at the end, "
                            "so no step can be chosen by it: add --keep last")
        if not 0 <= self.warmup_ratio < 1:
            raise UserError(f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not (0 <= self.weight_decay < math.inf and 0 <= self.max_grad_norm < math.inf):
            raise UserError(f"train.weight_decay and train.max_grad_norm must be finite numbers >= 0, got "
                            f"{self.weight_decay} and {self.max_grad_norm}")
        check_choice(self, "precision", PRECISIONS)
        check_choice(self, "scheduler", SCHEDULERS)
        check_choice(self, "batching", BATCHING)
        check_choice(self, "report_to", TRACKERS)
        check_available(self.report_to)
        if not 0 <= self.seed < 2**32:  # numpy's seed range
            raise UserError(f"train.seed must be in [0, 2**32), got {self.seed}")


@dataclass
class DataArgs:
    task: str | None = field(default=None, metadata={"help": "named task, hub dataset id, or none for files"})
    data_dir: str | None = field(default=None, metadata={"help": "where named tasks live (env PEFTBERT_DATA_DIR)"})
    train_file: str | None = field(default=None, metadata={"help": "CSV/TSV/JSONL/Parquet training file"})
    validation_file: str | None = field(default=None, metadata={"help": "validation file (default: carved from train)"})
    test_file: str | None = field(default=None, metadata={"help": "test file"})
    text_column: str | None = field(default=None, metadata={"help": "column with the text"})
    text_pair_column: str | None = field(default=None, metadata={"help": "second text column for pair tasks"})
    label_column: str | None = field(default=None, metadata={"help": "column with the label"})
    label_names: list[str] | None = field(default=None, metadata={"help": "label names in id order"})
    max_length: int = field(default=128, metadata={"help": "truncate inputs to this many tokens"})
    validation_fraction: float = field(default=0.1, metadata={"help": "share of train carved out for validation"})
    max_train_samples: int | None = field(default=None, metadata={"help": "use only the first N training rows"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "use only N validation/test rows"})
    train_per_class: int | None = field(default=None, metadata={
        "help": "low-label runs: N seeded training rows per class, and N per class of validation to match"})

    def __post_init__(self):
        check_positive(self, "max_length")
        check_positive_or_none(self, "max_train_samples", "max_eval_samples", "train_per_class")
        if not 0 < self.validation_fraction < 1:
            raise UserError(f"data.validation_fraction must be in (0, 1), got {self.validation_fraction}")


MODEL_HELP = "'minilm' (embedded default), a local checkpoint directory, or a hub id"


@dataclass
class TuneConfig:
    """`peftbert tune`: one model, one method, one task."""
    model: str = field(default="minilm", metadata={"help": MODEL_HELP})
    method: str = field(default="lora", metadata={"help": "fine-tuning method (see `peftbert methods`)"})
    output: str | None = field(default=None, metadata={
        "help": "run directory (default runs/<task>-<method>-<model>-s<seed>)"})
    pooling: str = field(default="cls", metadata={
        "help": "what the head reads: cls (BERT's pooler on [CLS]) | mean (token states averaged, as MiniLM was trained)"})
    train: TrainArgs = field(default_factory=TrainArgs)
    data: DataArgs = field(default_factory=DataArgs)
    method_args: Any = None  # the method's own config dataclass, filled by build_config

    def to_dict(self) -> dict:
        d = {"model": self.model, "method": self.method, "output": self.output, "pooling": self.pooling,
             "train": dataclasses.asdict(self.train), "data": dataclasses.asdict(self.data)}
        d[self.method] = dataclasses.asdict(self.method_args) if self.method_args is not None else {}
        return d


# ---------------------------------------------------------------- validation helpers
def check_positive(obj, *names):
    for n in names:
        v = getattr(obj, n)
        if v is None or not 0 < v < math.inf:  # NaN fails every comparison
            raise UserError(f"{type(obj).__name__}.{n} must be > 0 and finite, got {v}")


def check_positive_or_none(obj, *names):
    for n in names:
        v = getattr(obj, n)
        if v is not None and not 0 < v < math.inf:
            raise UserError(f"{type(obj).__name__}.{n} must be > 0 and finite, or unset, got {v}")


def check_choice(obj, name, choices):
    v = getattr(obj, name)
    if v not in choices:
        raise UserError(f"{name} must be one of {'|'.join(choices)}, got {v!r}")


# ---------------------------------------------------------------- loading and merging


def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"recipe not found: {p} (pass an existing YAML file, e.g. recipes/tune/default.yaml)")
    try:
        data = yaml_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"recipe {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"recipe {p} must be a YAML mapping of keys to values")
    return data


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_set(items: list[str]) -> dict:
    """`train.lr=1e-4 lora.r=16` -> nested dict; values parsed as YAML scalars/lists."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set expects key=value (e.g. train.lr=1e-4), got {item!r}")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {item!r}: {p} was already given a value, so it has no keys to set")
        try:
            node[parts[-1]] = yaml_load(raw)
        except yaml.YAMLError as e:
            raise UserError(f"--set {item!r}: the value is not valid YAML ({str(e).splitlines()[0]})") from None
    return out


def _mapping(values, where: str) -> dict:
    if values is not None and not isinstance(values, dict):
        raise UserError(f"{where} must be a mapping of settings (e.g. {where}: {{key: value}}), got {values!r}")
    return dict(values or {})


# keys of recipes written by earlier versions -> (the key now, value map); runs and searches saved before keep loading
RENAMED = {("train", "group_by_length"): ("batching", {True: "grouped", False: "random"})}


def renamed(values: dict, where: str) -> dict:
    """`values` (a block of a recipe) with the keys RENAMED lists under their names now."""
    values = dict(values)
    for (block, old), (new, mapping) in RENAMED.items():
        if where == block and old in values:
            if new in values:
                raise UserError(f"{where}.{old} is the old name of {where}.{new}: give only {new}")
            if values[old] not in mapping:
                raise UserError(f"{where}.{old} must be true or false, got {values[old]!r} (or use {where}.{new})")
            values[new] = mapping[values.pop(old)]
    return values


def build_dataclass(cls, values: dict | None, where: str):
    """Instantiate a config dataclass from a mapping, rejecting unknown keys and coercing numbers."""
    values = renamed(_mapping(values, where), where)
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(f"unknown key(s) in {where}: {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    for k, v in values.items():
        values[k] = _coerce(v, hints[k], f"{where}.{k}")
    try:
        return cls(**values)
    except TypeError as e:
        raise UserError(f"bad value in {where}: {e}") from None


def _coerce(v, hint, where):
    """YAML reads 5e-4 as a string and users write 3 for 3.0: coerce to the declared type."""
    text = str(hint)
    if v is None:
        return None
    try:
        if text.startswith("float") or text == "<class 'float'>":
            if not math.isfinite(float(v)):  # nan would pass every `v < 0` check
                raise UserError(f"{where} must be a finite number, got {v!r}")
            return float(v)
        if text.startswith("int") or text == "<class 'int'>":
            if isinstance(v, float) and not v.is_integer():
                raise ValueError
            return int(v)
        if text.startswith("bool") or text == "<class 'bool'>":
            if not isinstance(v, bool):
                raise ValueError
    except (TypeError, ValueError):
        raise UserError(f"{where} must be {text.replace('<class ', '').rstrip('>')}, got {v!r}") from None
    return v


def method_preset(method: str) -> dict:
    p = RECIPES_DIR / "methods" / f"{method}.yaml"
    return load_yaml(p) if p.is_file() else {}


def default_recipe() -> Path:
    return RECIPES_DIR / "tune" / "default.yaml"


def tune_recipe(recipe: str) -> str | Path:
    """A recipe file, or the name of one in recipes/tune (`--recipe low-label`)."""
    named = RECIPES_DIR / "tune" / f"{recipe}.yaml"
    return named if not Path(recipe).exists() and named.is_file() else recipe


RUN_KEYS = ("model", "method", "output", "task", "pooling")


def build_config(recipe: str | None, cli: dict, method_configs: dict) -> TuneConfig:
    """Merge preset < recipe < CLI and validate everything once, here at the edge.

    `cli` holds only what the user set; `method_configs` maps method name -> config dataclass.
    """
    recipe_d = load_yaml(tune_recipe(recipe)) if recipe else load_yaml(default_recipe())
    method = cli.get("method") or recipe_d.get("method") or "lora"
    if method not in method_configs:
        raise UserError(f"unknown method {method!r}; choose one of: {', '.join(sorted(method_configs))}")
    others = [m for m in method_configs if m != method and m in cli]
    if others:  # e.g. --lora.r with --method adapter: it would change nothing
        raise UserError(f"{others[0]} settings given (--{others[0]}.*) but the method is {method}: "
                        f"pass --method {others[0]} or drop them")
    # a top-level `task:` is data.task; moved per layer so a later layer's --task wins over an earlier `task:`
    layers = [_task_into_data(d) for d in (method_preset(method), recipe_d, cli)]
    merged = deep_merge(deep_merge(layers[0], layers[1]), layers[2])
    merged["method"] = method
    unknown = sorted(set(merged) - set(RUN_KEYS) - {"train", "data"} - set(method_configs))
    if unknown:
        raise UserError(f"unknown top-level key(s) in recipe: {', '.join(unknown)}")
    data = _mapping(merged.get("data"), "data")
    train = build_dataclass(TrainArgs, merged.get("train"), "train")
    check_metric(train.metric, SELECTION_METRICS, "tune")
    return TuneConfig(
        model=str(merged.get("model") or "minilm"),
        method=method,
        output=merged.get("output"),
        pooling=_pooling(merged.get("pooling", "cls")),
        train=train,
        data=build_dataclass(DataArgs, data, "data"),
        method_args=build_dataclass(method_configs[method], merged.get(method), method),
    )


POOLINGS = ("cls", "mean")  # models.use_pooling says what each reads


def _pooling(value) -> str:
    if value not in POOLINGS:
        raise UserError(f"pooling must be one of {'|'.join(POOLINGS)}, got {value!r}")
    return value


def _task_into_data(layer: dict) -> dict:
    if "task" not in layer:
        return layer
    layer = dict(layer)
    return {**layer, "data": {**_mapping(layer.get("data"), "data"), "task": layer.pop("task")}}


def check_metric(metric: str, known: dict, command: str) -> None:
    if metric not in known:
        raise UserError(f"train.metric for {command} must be one of {'|'.join(known)}, got {metric!r}")


def save_recipe(cfg, path: Path) -> None:
    """The resolved config of a run (tune's TuneConfig or adapt's AdaptConfig), beside its outputs."""
    from .runinfo import write_text

    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


# ---------------------------------------------------------------- adapt
@dataclass
class AdaptArgs:
    method: str = field(default="full", metadata={"help": "full (every weight) or lora (merged back at the end)"})
    block_size: int = field(default=128, metadata={"help": "tokens per packed block, [CLS] and [SEP] included"})
    mlm_probability: float = field(default=0.15, metadata={"help": "share of tokens predicted (80/10/10 split)"})
    whole_word_mask: bool = field(default=False, metadata={"help": "mask all pieces of a word together"})
    max_tokens: int | None = field(default=None, metadata={"help": "training-token budget (documents sampled)"})
    heldout_fraction: float = field(default=0.05, metadata={"help": "share of each source's documents held out"})
    max_heldout_tokens: int | None = field(default=100_000, metadata={"help": "cap on held-out tokens (eval cost)"})
    head_warmup_steps: int = field(default=0, metadata={"help": "train only the MLM head this many steps first"})
    head_warmup_lr: float = field(default=1e-3, metadata={"help": "learning rate of the head warm-up"})
    nsp: bool = field(default=False, metadata={"help": "add BERT's next-sentence objective on segment pairs"})
    select: int | None = field(default=None, metadata={
        "help": "keep only the N corpus lines nearest --task's training texts (kNN-selected TAPT)"})
    probe_task: str | None = field(default=None, metadata={
        "help": "score a linear probe for this task (its validation split) at every evaluation; keep the best, "
                "the starting encoder included (default: --task's own; none = off)"})
    probe_rows: int = field(default=1000, metadata={"help": "training rows the probe is fitted on, at most"})
    preserve: float = field(default=0.0, metadata={
        "help": "weight of a term keeping the encoder's mean-pooled embeddings near the original's (0 = off)"})
    decontaminate: list[str] | None = field(default=None, metadata={
        "help": "drop corpus text repeating these tasks' validation/test text (--task's is always dropped)"})

    @property
    def probed(self) -> str | None:
        """The task whose probe scores each evaluation, or None."""
        return probed_task(self.probe_task)

    def __post_init__(self):
        check_choice(self, "method", ("full", "lora"))
        check_positive(self, "head_warmup_lr", "probe_rows")
        check_positive_or_none(self, "max_tokens", "max_heldout_tokens", "select")
        if self.block_size < 8:
            raise UserError(f"adapt.block_size must be >= 8, got {self.block_size}")
        if not 0 < self.mlm_probability < 1 or not 0 < self.heldout_fraction < 1:
            raise UserError(f"adapt.mlm_probability and adapt.heldout_fraction must be in (0, 1), got "
                            f"{self.mlm_probability} and {self.heldout_fraction}")
        if not 0 <= self.preserve < math.inf:
            raise UserError(f"adapt.preserve must be a finite number >= 0, got {self.preserve}")
        if self.head_warmup_steps < 0:
            raise UserError(f"adapt.head_warmup_steps must be >= 0, got {self.head_warmup_steps}")


def _lora_args():
    from .methods.lora import LoraArgs
    return LoraArgs()


@dataclass
class AdaptConfig:
    """`peftbert adapt`: continued masked-LM pretraining on domain or task text."""
    model: str = field(default="minilm", metadata={"help": MODEL_HELP})
    output: str | None = field(default=None, metadata={
        "help": "run directory (default runs/adapt-<source>-<method>-<model>-s<seed>)"})
    domain: str | None = field(default=None, metadata={
        "help": "domain corpus: a name in recipes/domains (finance) or a YAML file"})
    corpus: list[str] = field(default_factory=list, metadata={
        "help": "text source (repeatable): .txt(.gz), folder, CSV/JSONL/Parquet, hub id"})
    task: str | None = field(default=None, metadata={"help": "task-adaptive pretraining on this task's training text"})
    text_column: str | None = field(default=None, metadata={
        "help": "text column of table sources (default: text/sentence/content/body)"})
    data_dir: str | None = field(default=None, metadata={
        "help": "where domain corpora and tasks live (env PEFTBERT_DATA_DIR)"})
    train: TrainArgs = field(default_factory=TrainArgs)
    adapt: AdaptArgs = field(default_factory=AdaptArgs)
    lora: Any = field(default_factory=_lora_args)  # the registry's LoraArgs, used with adapt.method lora

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ADAPT_BLOCKS}
        return {**d, **{b: dataclasses.asdict(getattr(self, b)) for b in ADAPT_BLOCKS}}


ADAPT_BLOCKS = ("train", "adapt", "lora")


def probed_task(probe_task: str | None) -> str | None:
    """adapt.probe_task as a task to probe, or None: `none` turns off --task's default."""
    return None if probe_task in (None, "none") else probe_task


def chosen_probe_task(merged: dict) -> str | None:
    """The task probed: the one named, else --task's own (a TAPT run has that task's labels at hand, and the
    task should decide what is kept: experiments/adapt-levers). `none` stays `none`, so a run's saved recipe
    reruns without a probe rather than falling back to --task's."""
    named = (merged.get("adapt") or {}).get("probe_task")
    return merged.get("task") if named in (None, "") else named


def task_schedule(user: dict) -> dict:
    """recipes/adapt/task.yaml where the task's own text is the only source (TAPT), else nothing; its step budget
    gives way to a length the user names (train.epochs or min_steps, adapt.max_tokens)."""
    if not user.get("task") or user.get("domain") or user.get("corpus"):
        return {}
    schedule = load_yaml(RECIPES_DIR / "adapt" / "task.yaml")
    train, adapt = user.get("train") or {}, user.get("adapt") or {}
    if any(train.get(k) is not None for k in ("epochs", "min_steps")) or adapt.get("max_tokens") is not None:
        (schedule.get("train") or {}).pop("max_steps", None)
    return schedule


def build_adapt_config(recipe: str | None, cli: dict) -> AdaptConfig:
    """default recipe (< task.yaml for TAPT: task_schedule) < --recipe < CLI; validated here, once. `cli` holds
    only what the user set."""
    from .methods.lora import LoraArgs

    merged = load_yaml(RECIPES_DIR / "adapt" / "default.yaml")
    user = deep_merge(load_yaml(recipe), cli) if recipe else cli  # what the user set, over the defaults
    merged = deep_merge(deep_merge(merged, task_schedule(user)), user)
    merged["adapt"] = {**(merged.get("adapt") or {}), "probe_task": chosen_probe_task(merged)}
    if probed_task(merged["adapt"]["probe_task"]) and "metric" not in (user.get("train") or {}):
        # a task to probe is named so that the task decides: perplexity can fall while the task's score does too
        merged["train"] = {**merged["train"], "metric": "probe_macro_f1"}
    run_keys = [f.name for f in fields(AdaptConfig) if f.name not in ADAPT_BLOCKS]
    unknown = sorted(set(merged) - set(run_keys) - set(ADAPT_BLOCKS))
    if unknown:
        raise UserError(f"unknown top-level key(s) in adapt recipe: {', '.join(unknown)} "
                        f"(known: {', '.join(run_keys + list(ADAPT_BLOCKS))})")
    for key in run_keys:  # text values (corpus: one or a list of them)
        value = merged.get(key)
        items = value if key == "corpus" and isinstance(value, list) else [value]
        if any(v is not None and not isinstance(v, str) for v in items):
            what = "a path or a list of paths" if key == "corpus" else "text"
            raise UserError(f"{key} must be {what}, got {value!r}")
    corpus = merged.get("corpus") or []
    cfg = AdaptConfig(**{k: merged.get(k) for k in run_keys if k != "corpus"},
                      corpus=[corpus] if isinstance(corpus, str) else list(corpus),
                      train=build_dataclass(TrainArgs, merged.get("train"), "train"),
                      adapt=build_dataclass(AdaptArgs, merged.get("adapt"), "adapt"),
                      lora=build_dataclass(LoraArgs, merged.get("lora"), "lora"))
    cfg.model = str(cfg.model or "minilm")
    check_metric(cfg.train.metric, MLM_METRICS, "adapt")
    if cfg.train.metric.startswith("probe_") and not cfg.adapt.probed:
        raise UserError(f"train.metric {cfg.train.metric} needs a task to probe: pass --probe-task NAME (not none)")
    defaults = TrainArgs()
    for name in HEAD_SETTINGS:  # (not flags of adapt; a recipe could still carry them)
        if getattr(cfg.train, name) != getattr(defaults, name):
            raise UserError(f"train.{name} applies to tune's task head; adapt has none: remove it from the recipe")
    if cfg.train.batching == "packed":
        raise UserError("adapt packs its blocks already: set train.batching to random (or grouped), not packed")
    if cfg.adapt.select and not (cfg.task and (cfg.domain or cfg.corpus)):
        raise UserError("adapt.select picks corpus text near a task's: pass --task NAME and --domain or --corpus")
    if not (cfg.domain or cfg.corpus or cfg.task):
        raise UserError("nothing to adapt on: pass --domain finance, --corpus FILE (repeatable) or --task NAME")
    return cfg
