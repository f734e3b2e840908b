"""params.yaml validation: every bad value is named, with what is allowed."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from cifar10_tricks import params

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_project_params_load(raw):
    p = params.load(ROOT / "params.yaml")
    assert (
        list(p.study)
        == list(p.studies["blog"])
        == list(p.variants)[:8]
        == [
            "baseline",
            "norm_inputs",
            "lr_schedule",
            "weight_decay",
            "init_weights",
            "dropout_dense",
            "dropout_conv",
            "dropout_both",
        ]
    )
    assert (
        p.train.seeds == ("0-9",)
        and p.train.all_seeds == tuple(range(10))
        and p.train.seeds_per_step == "auto"
        and p.train.epochs == 10
    )
    assert {v.batch_size for v in p.studied.values()} == {64}
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


def test_the_blogs_eight_keep_the_blogs_recipe_for_the_slides_knobs(raw):
    """The knobs the blog took for granted are at the blog's values in its eight rungs: ReLU,
    cross-entropy, Adam with no momentum, batches of 64, a fresh order every epoch, L2 from the
    first step."""
    p = params.parse(raw)
    for name in p.studies["blog"]:
        v = p.variants[name]
        assert (v.activation, v.loss, v.optimizer, v.momentum) == (
            "relu",
            "cross_entropy",
            "adam",
            0,
        )
        assert (v.batch_size, v.shuffle, v.regularize_from) == (64, "every_epoch", 0), name


def test_the_slide_study_takes_one_trick_out_at_a_time(raw):
    """Each full_<x> differs from full, and each bare_<x> from the blog's baseline, in the knobs
    of one trick only; full is dropout_both with L2 from epoch 3; every trick pair names two
    variants of the slide study, each pair differing in its trick's knobs."""
    p = params.parse(raw)
    v = p.variants

    def diff(a, b):
        return {k for k in vars(v[a]) if getattr(v[a], k) != getattr(v[b], k)}

    assert diff("full", "dropout_both") == {"regularize_from"}
    assert v["full"].regularize_from > 0
    knobs = {
        "tanh": {"activation"},
        "sigmoid": {"activation"},
        "mse": {"loss"},
        "sgd": {"optimizer", "lr"},
        "momentum": {"optimizer", "momentum", "lr"},
        "batch1024": {"batch_size"},
        "once": {"shuffle"},
        "sorted": {"shuffle"},
        "no_norm": {"normalize"},
        "no_schedule": {"lr", "lr_decay"},
        "no_l2": {"weight_decay"},
        "default_init": {"init"},
        "no_dropout": {"dropout_conv", "dropout_dense"},
    }
    for name in p.studies["slide"]:
        if name.startswith("full_"):
            assert diff(name, "full") == knobs[name[5:]], name
        elif name.startswith("bare_"):
            assert diff(name, "baseline") == knobs[name[5:]], name
    slide = set(p.studies["slide"])
    assert set(p.studies["blog"]) < slide and len(slide) == 30
    for trick, contexts in p.compare.tricks.items():
        for pairs in contexts.values():
            for with_, without in pairs:
                assert {with_, without} <= slide and diff(with_, without), (trick, with_, without)


def _load_text(tmp_path, text: str):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return params.load(path)


@pytest.mark.parametrize(
    "edit, key, expected",
    [
        (("epochs: 10", "epochs: 010"), "epochs", 10),  # YAML 1.1 would say 8
        (("epochs: 10", "epochs: 0x10"), "epochs", 16),
        (("batch_size: 64", "batch_size: 1e3"), None, "batch_size = 1000.0 is not an integer"),
        (("    lr: 0.001\n", "    lr: 1e-3\n"), "lr", 0.001),  # the baseline's: the first
        (
            ("normalize: false\n", "normalize: yes\n"),
            None,
            "normalize = 'yes' is not true or false",
        ),
    ],
)
def test_params_are_read_as_dvc_reads_them(tmp_path, edit, key, expected):
    """YAML 1.2, as DVC records params (`dvc params diff`): the value run is the value recorded."""
    from dvc.utils.serialize import parse_yaml

    text = (ROOT / "params.yaml").read_text()
    assert edit[0] in text
    text = text.replace(edit[0], edit[1], 1)
    dvc = parse_yaml(text, "params.yaml")
    if key is None:
        with pytest.raises(params.ParamsError, match=expected):
            _load_text(tmp_path, text)
        return
    p = _load_text(tmp_path, text)
    ours = p.variants["baseline"].lr if key == "lr" else getattr(p.train, key)
    theirs = dvc["variants"]["baseline"]["lr"] if key == "lr" else dvc["train"][key]
    assert ours == theirs == expected


def test_merge_keys_work_as_in_dvc(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    text = (
        yaml.safe_dump(raw, sort_keys=False).replace(
            "variants:\n  baseline:\n", "variants:\n  baseline: &base\n", 1
        )
        + "\n"
    )
    text = text.replace("  norm_inputs:\n", "  norm_inputs:\n    <<: *base\n", 1)
    p = _load_text(tmp_path, text)
    assert p.variants["norm_inputs"].normalize is True and p.variants["norm_inputs"].lr == 0.001


@pytest.mark.parametrize(
    "text, message",
    [
        (b"# caf\xe9\ntrain: {}\n", "is not UTF-8 text \\(byte 0xe9 at offset 5\\)"),
        (b"? [a, b]\n: 1\n", "is not valid YAML|must be a mapping|unknown top-level key"),
        (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply|not valid YAML"),
        (
            b"a: &a [1, 1]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: &d [*c, *c]\n" * 1,
            "unknown top-level key",
        ),
    ],
)
def test_hostile_yaml_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_bytes(text)
    with pytest.raises(params.ParamsError, match=message) as err:
        params.load(path)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


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
        (("variants", "baseline", "lr"), 0, r"baseline.lr = 0 .*a number in \(0, 1e\+06\]"),
        (("variants", "baseline", "lr"), -0.1, r"variants.baseline.lr = -0.1 .*\(0, 1e\+06\]"),
        (("variants", "baseline", "lr"), "fast", r"variants.baseline.lr = 'fast' is not a number"),
        (("variants", "baseline", "lr_decay"), 1.5, r"lr_decay = 1.5 .*\(0, 1\]"),
        (("variants", "baseline", "lr_decay"), 0, r"lr_decay = 0 .*\(0, 1\]"),
        (("variants", "baseline", "dropout_conv"), 1.0, r"dropout_conv = 1.0 .*\[0, 1\)"),
        (("variants", "baseline", "dropout_dense"), -0.2, r"dropout_dense = -0.2 .*\[0, 1\)"),
        (("variants", "baseline", "weight_decay"), -1e-4, r"weight_decay = -0.0001 .*\[0, 1\]"),
        (("variants", "baseline", "l1"), -1, r"l1 = -1 .*\[0, 1\]"),
        (("variants", "baseline", "normalize"), "yes", r"normalize = 'yes' is not true or false"),
        (("variants", "baseline", "init"), "xavier", r"init = 'xavier' .*default, kaiming_uniform"),
        (("variants", "baseline", "beta"), 0.9, r"variants.baseline: unknown key 'beta'"),
        (("variants", "baseline", "activation"), "gelu", r"activation = 'gelu' .*relu, tanh, sig"),
        (("variants", "baseline", "loss"), "hinge", r"loss = 'hinge' .*cross_entropy, mse"),
        (("variants", "baseline", "optimizer"), "rmsprop", r"optimizer = 'rmsprop' .*adam, sgd"),
        (
            ("variants", "baseline", "momentum"),
            0.9,
            r"baseline.momentum = 0.9 .*with optimizer adam",
        ),
        (("variants", "bare_sgd", "momentum"), 1.0, r"bare_sgd.momentum = 1.0 .*\[0, 1\)"),
        (("variants", "baseline", "batch_size"), 0, r"baseline.batch_size = 0 .*from 1 to 100,000"),
        (("variants", "baseline", "shuffle"), "never", r"shuffle = 'never' .*every_epoch, once, s"),
        (
            ("variants", "baseline", "regularize_from"),
            -1,
            r"regularize_from = -1 .*from 0 to 10,000",
        ),
        (("train", "batch_size"), 64, r"train: unknown key 'batch_size'"),
        (("study",), [], r"study = \[\] is not allowed; it must be a list of the variants"),
        (("study",), ["baseline", "nope"], r"study: 'nope' is not a variant"),
        (("study",), ["baseline", "baseline"], r"study: 'baseline' is listed twice"),
        (("study",), ["norm_inputs"], r"compare.baseline = 'baseline' is not in `study`"),
        (("studies", "slide"), ["x"], r"studies.slide: 'x' is not a variant"),
        (("compare", "tricks", "relu"), {"bare": [["baseline"]]}, r"tricks.relu.bare = .*pairs"),
        (("compare", "tricks", "relu"), {"alone": []}, r"compare.tricks.relu = .*bare and/or full"),
        (("train", "epochs"), 0, r"train.epochs = 0 .*an integer from 1 to 10,000"),
        (("train", "epochs"), 2.5, r"train.epochs = 2.5 is not an integer"),
        (("train", "epochs"), True, r"train.epochs = True is not an integer"),
        (("train", "seeds"), [], r"train.seeds = \[\] .*a list of blocks of seeds, each an"),
        (("train", "seeds"), [1, 1], r"a block is listed twice"),
        (("train", "seeds"), ["0-9", "5-14"], r"seed 5 is in two blocks"),
        (("train", "seeds"), ["9-0"], r"'9-0' is a range that runs backwards"),
        (("train", "seeds"), ["0-1000"], r"'0-1000' is more than 1000 seeds"),
        (("train", "seeds"), ["0-499", "500-1000"], r"these blocks hold 1,001 seeds"),
        (("train", "seeds"), ["0..9"], r"'0..9' is not an integer or a range 'a-b'"),
        (("train", "seeds"), [[0, 1]], r"\[0, 1\] is not an integer or a range"),
        (("train", "seeds"), [True], r"True is not an integer or a range"),
        (("train", "seeds"), 3, r"train.seeds = 3 is not a list"),
        (
            ("train", "seeds_per_step"),
            0,
            r"seeds_per_step = 0 is not allowed; it must be auto or an integer from 1 to 1000",
        ),
        (
            ("train", "seeds_per_step"),
            "all",
            r"train.seeds_per_step = 'all' .* auto or an integer from 1 to 1000",
        ),
        (("train", "device"), "tpu", r"train.device = 'tpu' .*auto, cpu, cuda, cuda:<k>, mps"),
        (("train", "device"), "cuda:x", r"train.device = 'cuda:x' .*e.g. cuda:1"),
        (("train", "precision"), "fp16", r"train.precision = 'fp16' .*auto, fp32, bf16"),
        (("data", "md5"), "xyz", r"data.md5 = 'xyz' .*32 lower-case hex"),
        (("data", "synthetic", "n_train"), 5, r"data.synthetic.n_train = 5 .*from 10 to 100,000"),
        (("data", "source"), "", r"data.source = ''"),
        # Bounds where torch or NumPy would refuse (or overflow) later, mid-run.
        (("train", "seeds"), [0, 2**32], r"train.seeds = \[0, 4294967296\] .*to 4,294,967,295"),
        (("variants", "baseline", "lr"), 1e308, r"lr = 1e\+308 .*\(0, 1e\+06\]"),
        (("variants", "baseline", "lr"), float("inf"), r"lr = inf .*\(0, 1e\+06\]"),
        (("data", "synthetic", "n_test"), 10**9, r"n_test = 1000000000 .*from 10 to 20,000"),
        (("compare", "parents"), ["a", "b"], r"compare.parents = \['a', 'b'\] is not a mapping"),
        (
            ("compare", "parents"),
            {"norm_inputs": ["x"]},
            r"compare.parents: 'norm_inputs': \['x'\]",
        ),
        (
            ("variants", "baseline", "lr"),
            "1e-3",
            r"lr = '1e-3' is not a number",
        ),  # quoted: a string
        (("compare", "baseline"), "nope", r"compare.baseline = 'nope' is not in `study`"),
        # A parent that is the variant itself, unknown, or in a loop (a variant without an
        # entry builds on the one before it): the variant would vanish from the answer.
        (
            ("compare", "parents"),
            {"norm_inputs": "norm_inputs"},
            r"norm_inputs: norm_inputs compares a variant with itself",
        ),
        (("compare", "parents"), {"norm_inputs": "nope"}, r"'norm_inputs': 'nope' must name two"),
        (
            ("compare", "parents"),
            {"baseline": "norm_inputs"},
            r"makes a loop \(baseline -> norm_inputs -> baseline",
        ),
        (
            ("compare", "parents"),
            {"lr_schedule": "weight_decay", "weight_decay": "lr_schedule"},
            r"makes a loop \(lr_schedule -> weight_decay -> lr_schedule",
        ),
        (("compare", "alpha"), 1.0, r"compare.alpha = 1.0 .*\(0, 1\)"),
        (("extra",), 1, r"unknown top-level key 'extra'"),
        (("variants",), {}, r"`variants` must list at least one variant"),
    ],
)
def test_bad_values_name_key_value_and_allowed(raw, path, value, message):
    with pytest.raises(params.ParamsError, match=message):
        params.parse(_bad(raw, path, value))


@pytest.mark.parametrize(
    "name", ["has space", "a/b", "train@x", "9lives", "x" * 65, "dot.name", "a-1"]
)
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
    edited = text.replace("variants:\n", "variants:\n  baseline: {lr: 0.5}\n", 1)
    assert edited != text
    path.write_text(edited)
    with pytest.raises(params.ParamsError, match="key 'baseline' is given twice"):
        params.load(path)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(params.ParamsError, match="cannot read"):
        params.load(tmp_path / "params.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(params.ParamsError, match="not valid YAML"):
        params.load(bad)
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * params.MAX_PARAMS_BYTES)
    with pytest.raises(params.ParamsError, match=r"huge.yaml is 1,048,578 bytes; params.yaml is"):
        params.load(huge)


def test_params_are_frozen(raw):
    p = params.parse(raw)
    with pytest.raises(AttributeError):
        p.train.epochs = 3


@pytest.mark.parametrize(
    "key, value",
    [
        ("variants.dropout_conv.dropout_conv", 0.3),
        ("train.epochs", 3),
        ("compare.alpha", 0.01),
        ("data.md5", "0" * 32),
        ("data.source", "synthetic"),
        ("variants.baseline.init", "kaiming_uniform"),
    ],
)
def test_a_one_key_set_changes_one_line_of_params_yaml(tmp_path, key, value):
    """`dvc exp run -S` and `dvc exp apply` rewrite params.yaml through DVC's round-trip YAML:
    the file is written in the form DVC writes back, so one key is one line of diff."""
    import difflib

    from dvc.utils.serialize import modify_yaml

    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    with modify_yaml(path) as doc:
        node = doc
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    before, after = (ROOT / "params.yaml").read_text().splitlines(), path.read_text().splitlines()
    changed = [
        line
        for line in difflib.unified_diff(before, after, lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert len(changed) == 2, changed  # one line out, one line in
    assert params.load(path) is not None  # and it still validates


@pytest.mark.parametrize(
    "path, says",
    [
        (("train", "epochs"), "train.epochs is missing; it must be an integer from 1 to 10,000"),
        (("train", "seeds_per_step"), "train.seeds_per_step is missing; it must be auto or"),
        (("variants", "baseline", "l1"), "variants.baseline.l1 is missing; it must be a number"),
        (("data", "md5"), "data.md5 is missing; it must be null or 32"),
        (("data", "synthetic"), "data.synthetic is missing; it must be a mapping with the keys"),
        (("compare", "test"), "compare.test is missing; it must be one of paired, welch"),
        (("compare",), "params.yaml has no `compare` section"),
    ],
)
def test_a_missing_key_is_an_error_naming_it_and_what_it_holds(raw, path, says):
    """No default hides in code: what a stage runs with is what params.yaml (and DVC) shows."""
    where = raw
    for key in path[:-1]:
        where = where[key]
    del where[path[-1]]
    with pytest.raises(params.ParamsError, match=re.escape(says)):
        params.parse(raw)


def test_grow_appends_the_next_seeds_as_one_block():
    assert params.grow(("0-9",), 20) == (("0-9", "10-19"), tuple(range(10, 20)))
    assert params.grow((3, "5-6"), 4) == ((3, "5-6", 7), (7,))
    assert params.grow(("0-9",), 5) == (("0-9",), ())


def test_blocks_of_seeds_name_their_seeds_and_stages():
    assert params.block_seeds("0-3") == (0, 1, 2, 3) and params.block_seeds(7) == (7,)
    assert params.block_seeds("5-5") == (5,) and params.block_name(7) == "7"
    tp = params.TrainParams(seeds=("0-2", 9, "10-11"))
    assert tp.all_seeds == (0, 1, 2, 9, 10, 11)
