
import pytest

from peftbert.config import RECIPES_DIR, TrainArgs, build_config, build_dataclass, load_yaml, parse_set
from peftbert.errors import UserError
from peftbert.methods import METHODS, method_configs


def all_recipes():
    return sorted(p for p in RECIPES_DIR.rglob("*.yaml"))


@pytest.mark.parametrize("path", all_recipes(), ids=lambda p: str(p.relative_to(RECIPES_DIR)))
def test_every_recipe_loads_against_the_code(path):
    """Like litgpt's config-hub test: a YAML that drifts from the dataclasses fails here."""
    data = load_yaml(path)
    if path.parent.name == "methods":
        assert path.stem in METHODS, f"preset for unregistered method {path.stem}"
        build_config(None, {"method": path.stem}, method_configs())
        build_dataclass(METHODS[path.stem].config_cls, data.get(path.stem), path.stem)
    elif path.parent.name == "tune":
        build_config(str(path), {}, method_configs())
    else:
        assert data  # other recipe kinds are checked by their own tests


def test_every_method_has_a_preset():
    for name in METHODS:
        assert (RECIPES_DIR / "methods" / f"{name}.yaml").is_file(), name


def test_override_order_preset_then_recipe_then_cli(tmp_path):
    preset_lr = load_yaml(RECIPES_DIR / "methods" / "lora.yaml")["train"]["lr"]
    assert build_config(None, {"method": "lora"}, method_configs()).train.lr == pytest.approx(preset_lr)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: lora\ntrain: {lr: 1.0e-3, epochs: 7}\nlora: {r: 4}\n")
    cfg = build_config(str(recipe), {}, method_configs())
    assert (cfg.train.lr, cfg.train.epochs, cfg.method_args.r) == (1e-3, 7, 4)
    cfg = build_config(str(recipe), {"train": {"lr": 2e-3}, **parse_set(["lora.r=16"])}, method_configs())
    assert (cfg.train.lr, cfg.train.epochs, cfg.method_args.r) == (2e-3, 7, 16)


def test_full_preset_lr_is_about_a_tenth_of_lora():
    full = build_config(None, {"method": "full"}, method_configs()).train.lr
    lora = build_config(None, {"method": "lora"}, method_configs()).train.lr
    assert 5 <= lora / full <= 30  # 10-20x in the LoRA paper; the searched presets (r 16, alpha 64) put it near 6x


@pytest.mark.parametrize("bad, msg", [
    ({"train": {"lr": -1}}, "lr"),
    ({"train": {"precision": "fp8"}}, "precision"),
    ({"train": {"batch_size": "many"}}, "batch_size"),
    ({"train": {"bogus": 1}}, "bogus"),
    ({"lora": {"r": 0}}, "r > 0"),
    ({"method": "nope"}, "unknown method"),
    ({"data": {"validation_fraction": 1.5}}, "validation_fraction"),
])
def test_bad_values_are_one_clear_error(bad, msg):
    with pytest.raises(UserError, match=msg):
        build_config(None, bad, method_configs())


def test_yaml_numbers_are_coerced():
    # PyYAML reads `5e-4` (no dot) as a string; the config must still get a float
    args = build_dataclass(TrainArgs, {"lr": "5e-4", "epochs": 2}, "train")
    assert args.lr == 5e-4 and isinstance(args.epochs, float)


def test_bad_recipe_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        build_config(str(tmp_path / "missing.yaml"), {}, method_configs())
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(UserError, match="mapping"):
        build_config(str(tmp_path / "list.yaml"), {}, method_configs())
    with pytest.raises(UserError, match="key=value"):
        parse_set(["train.lr"])


def test_yaml_reads_only_true_and_false_as_booleans(tmp_path):
    """YAML 1.1 would read `precision: no` as False; peftbert reads YAML 1.2 booleans."""
    assert parse_set(["train.precision=no", "adapt.whole_word_mask=true", "x.y=off"]) == {
        "train": {"precision": "no"}, "adapt": {"whole_word_mask": True}, "x": {"y": "off"}}
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  precision: no\n")
    assert load_yaml(recipe) == {"train": {"precision": "no"}}
    assert build_config(str(recipe), {}, method_configs()).train.precision == "no"


@pytest.mark.parametrize("sets, needle", [
    (["lora.target_modules=[q"], "not valid YAML"),
    (["train=1", "train.lr=2"], "train was already given a value"),
    (["train=5"], "train must be a mapping"),
    (["lora=8"], "lora must be a mapping"),
    (["data=x"], "data must be a mapping"),
    (["train.seed=-1"], "train.seed must be in [0, 2**32)"),
])
def test_malformed_settings_are_user_errors(sets, needle):
    with pytest.raises(UserError) as e:
        build_config(None, parse_set(sets), method_configs())
    assert needle in str(e.value)


def test_recipes_from_before_packing_still_load(tiny_bert, toy_files):
    """train.group_by_length (until packed batches) is read as train.batching; runs and searches saved with it load."""
    from helpers import make_config
    from peftbert.search import upgraded

    for old, new in ((True, "grouped"), (False, "random")):
        assert make_config(tiny_bert, toy_files, sets=[f"train.group_by_length={str(old).lower()}"]).train.batching == new
    with pytest.raises(UserError, match="old name of train.batching"):
        make_config(tiny_bert, toy_files, sets=["train.group_by_length=true", "train.batching=packed"])
    with pytest.raises(UserError, match="true or false"):
        make_config(tiny_bert, toy_files, sets=["train.group_by_length=maybe"])
    stored = {"run": {"model": "m", "train": {"lr": 1.0, "group_by_length": True}}, "space": {}}
    assert upgraded(stored)["run"]["train"] == {"lr": 1.0, "batching": "grouped"}
