"""params.yaml validation: every bad value is named, with what is allowed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from stages import params

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_project_params_load(raw):
    p = params.load(ROOT / "params.yaml")
    assert list(p.variants) == [
        "baseline",
        "norm_inputs",
        "lr_schedule",
        "weight_decay",
        "init_weights",
        "dropout_dense",
        "dropout_conv",
        "dropout_both",
    ]
    assert (
        p.train.seeds == tuple(range(10))
        and p.train.seeds_per_step == "auto"
        and p.train.epochs == 10
        and p.train.batch_size == 64
    )
    assert p.data.source == "cifar10" and p.data.md5 is None
    assert p.variants["lr_schedule"].lr_decay == 0.8
    assert (
        p.variants["dropout_both"].dropout_conv == p.variants["dropout_both"].dropout_dense == 0.2
    )


def test_ladder_changes_one_trick_per_rung(raw):
    """Each rung differs from its parent in the knobs the blog names, and no others."""
    v = params.parse(raw).variants

    def diff(a, b):
        return {k for k in vars(v[a]) if getattr(v[a], k) != getattr(v[b], k)}

    assert diff("norm_inputs", "baseline") == {"normalize"}
    assert diff("lr_schedule", "norm_inputs") == {"lr", "lr_decay"}
    assert diff("weight_decay", "lr_schedule") == {"weight_decay"}
    assert diff("init_weights", "weight_decay") == {"init"}
    assert diff("dropout_dense", "init_weights") == {"dropout_dense"}
    assert diff("dropout_conv", "init_weights") == {"dropout_conv"}
    assert diff("dropout_both", "init_weights") == {"dropout_conv", "dropout_dense"}


def test_scientific_notation_is_a_number(raw):
    raw["variants"]["baseline"]["lr"] = "1e-3"  # what YAML 1.1 makes of `lr: 1e-3`
    assert params.parse(raw).variants["baseline"].lr == 0.001


def _bad(raw, path, value):
    raw = copy.deepcopy(raw)
    node = raw
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return raw


_DELETE = object()


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("variants", "baseline", "lr"), 0, r"variants.baseline.lr = 0 .* > 0"),
        (("variants", "baseline", "lr"), -0.1, r"variants.baseline.lr = -0.1 .* > 0"),
        (("variants", "baseline", "lr"), "fast", r"variants.baseline.lr = 'fast' is not a number"),
        (("variants", "baseline", "lr_decay"), 1.5, r"lr_decay = 1.5 .*\(0, 1\]"),
        (("variants", "baseline", "lr_decay"), 0, r"lr_decay = 0 .*\(0, 1\]"),
        (("variants", "baseline", "dropout_conv"), 1.0, r"dropout_conv = 1.0 .*\[0, 1\)"),
        (("variants", "baseline", "dropout_dense"), -0.2, r"dropout_dense = -0.2 .*\[0, 1\)"),
        (("variants", "baseline", "weight_decay"), -1e-4, r"weight_decay = -0.0001 .*>= 0"),
        (("variants", "baseline", "l1"), -1, r"l1 = -1 .*>= 0"),
        (("variants", "baseline", "normalize"), "yes", r"normalize = 'yes' is not true or false"),
        (("variants", "baseline", "init"), "xavier", r"init = 'xavier' .*default, kaiming_uniform"),
        (("variants", "baseline", "momentum"), 0.9, r"variants.baseline: unknown key 'momentum'"),
        (("train", "epochs"), 0, r"train.epochs = 0 .*>= 1"),
        (("train", "batch_size"), 0, r"train.batch_size = 0 .*>= 1"),
        (("train", "epochs"), 2.5, r"train.epochs = 2.5 is not an integer"),
        (("train", "epochs"), True, r"train.epochs = True is not an integer"),
        (("train", "seeds"), [], r"train.seeds = \[\] .*non-empty"),
        (("train", "seeds"), [1, 1], r"seed is listed twice"),
        (("train", "seeds"), 3, r"train.seeds = 3 is not a list"),
        (
            ("train", "seeds_per_step"),
            0,
            r"train.seeds_per_step = 0 is not allowed; it must be auto or an integer >= 1",
        ),
        (
            ("train", "seeds_per_step"),
            "all",
            r"train.seeds_per_step = 'all' .* auto or an integer >= 1",
        ),
        (("train", "device"), "tpu", r"train.device = 'tpu' .*auto, cpu, cuda, cuda:<k>, mps"),
        (("train", "device"), "cuda:x", r"train.device = 'cuda:x' .*e.g. cuda:1"),
        (("train", "precision"), "fp16", r"train.precision = 'fp16' .*auto, fp32, bf16"),
        (("data", "md5"), "xyz", r"data.md5 = 'xyz' .*32 lower-case hex"),
        (("data", "synthetic", "n_train"), 5, r"data.synthetic.n_train = 5 .*>= 10"),
        (("data", "source"), "", r"data.source = ''"),
        (("compare", "baseline"), "nope", r"compare.baseline = 'nope' is not a variant"),
        (("compare", "alpha"), 1.0, r"compare.alpha = 1.0 .*\(0, 1\)"),
        (("extra",), 1, r"unknown top-level key 'extra'"),
        (("variants",), {}, r"`variants` must list at least one variant"),
    ],
)
def test_bad_values_name_key_value_and_allowed(raw, path, value, message):
    with pytest.raises(params.ParamsError, match=message):
        params.parse(_bad(raw, path, value))


@pytest.mark.parametrize("name", ["has space", "a/b", "train@x", "9lives", "x" * 65, "dot.name"])
def test_unsafe_variant_names_are_refused(raw, name):
    raw["variants"][name] = dict(raw["variants"]["baseline"])
    with pytest.raises(params.ParamsError, match="is not allowed; use a letter"):
        params.parse(raw)


def test_names_differing_only_in_case_are_refused(raw):
    raw["variants"]["Baseline"] = dict(raw["variants"]["baseline"])
    with pytest.raises(params.ParamsError, match="differs from another name only in case"):
        params.parse(raw)


def test_duplicate_keys_are_refused(tmp_path):
    text = (ROOT / "params.yaml").read_text()
    path = tmp_path / "params.yaml"
    path.write_text(text.replace("variants:\n", "variants:\n  baseline: {lr: 0.5}\n", 1))
    with pytest.raises(params.ParamsError, match="key 'baseline' is given twice"):
        params.load(path)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(params.ParamsError, match="cannot read"):
        params.load(tmp_path / "params.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(params.ParamsError, match="not valid YAML"):
        params.load(bad)


def test_params_are_frozen(raw):
    p = params.parse(raw)
    with pytest.raises(AttributeError):
        p.train.epochs = 3
