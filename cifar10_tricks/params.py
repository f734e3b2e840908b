"""The params.yaml schema: read once, into typed, validated, frozen objects.

The stages that read params (download, train, compare) call :func:`load` and use only the
sections ``dvc.yaml`` lists as their params, so an edit elsewhere reruns nothing.  The
whole file is validated on every load, so a typo anywhere fails at the first such stage
with a message that names the key, the value and what is allowed, never halfway through
a run.  Every key is required: a stage never runs with a value that params.yaml (and so
`dvc params diff`) does not show.  The dataclasses' defaults are for code that builds them
directly (tests, benchmarks); the loader never falls back on them.

Sections: ``data`` (download), ``train`` (train), ``variants`` (train, one entry per
variant; compare, their names and order), ``compare`` (compare).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cifar10_tricks.errors import UserError

# Safe as a file name, a DVC stage name and a `dvc exp run -S` key; no '-', which joins a
# variant to its block of seeds in a stage's name (train@<variant>-<seeds>), so no two
# (variant, block) pairs can give one name.
VARIANT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
# A block of seeds as params.yaml writes it: one seed (7) or a range, both ends in ("0-9").
BLOCK = re.compile(r"^(\d{1,10})-(\d{1,10})$")
DEVICES = ("auto", "cpu", "cuda", "cuda:<k>", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
INITS = ("default", "kaiming_uniform")
ACTIVATIONS = ("relu", "tanh", "sigmoid")
LOSSES = ("cross_entropy", "mse")
OPTIMIZERS = ("adam", "sgd")
SHUFFLES = ("every_epoch", "once", "sorted")
METHODS = ("paired", "welch")  # compare.test
CORRECTIONS = ("holm", "none")


class ParamsError(UserError):
    """params.yaml is missing, unreadable or holds a value outside what is allowed."""


# --- checks: each returns an error text (what is allowed) or None --------------------


def _between(low: float, high: float, low_open: bool = False, note: str = ""):
    """A number in [low, high] ((low, high] with ``low_open``): finite, and small enough for
    torch and NumPy to take (a learning rate of 1e308 overflows on the first step)."""
    text = f"a number in {'(' if low_open else '['}{low:g}, {high:g}]{note}"

    def check(v: float) -> str | None:
        ok = math.isfinite(v) and (low < v if low_open else low <= v) and v <= high
        return None if ok else text

    return check


def _probability(v: float) -> str | None:
    return None if 0 <= v < 1 else "a probability in [0, 1)"


def _integer(low: int, high: int) -> Callable[[int], str | None]:
    return lambda v: None if low <= v <= high else f"an integer from {low:,} to {high:,}"


def _open_unit(v: float) -> str | None:
    return None if 0 < v < 1 else "a number in (0, 1)"


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str | None]:
    return lambda v: None if v in choices else "one of " + ", ".join(choices)


def _md5(v: str | None) -> str | None:
    if v is None or re.fullmatch(r"[0-9a-f]{32}", v):
        return None
    return "null or 32 lower-case hex digits"


MAX_SEED = 2**32 - 1  # NumPy's legacy seeding takes 32 bits
MAX_SEEDS = 1000


def _ends(block: int | str) -> tuple[int, int]:
    """A block's lowest and highest seed (a block :func:`seed_block_problem` accepts)."""
    if isinstance(block, int):
        return block, block
    low, high = BLOCK.match(block).groups()
    return int(low), int(high)


def block_seeds(block: int | str) -> tuple[int, ...]:
    """The seeds of one block of ``train.seeds``: ``7`` is (7,), ``"0-9"`` is (0, ..., 9)."""
    low, high = _ends(block)
    return tuple(range(low, high + 1))


def block_name(block: int | str) -> str:
    """The block as DVC names its stages and this project its folders: ``0-9``, ``7``."""
    return str(block)


def seed_block_problem(block) -> str | None:
    """Why ``block`` is not a block of seeds, or None."""
    if isinstance(block, bool) or not isinstance(block, (int, str)):
        return "not an integer or a range"
    if isinstance(block, int):
        return None if 0 <= block <= MAX_SEED else f"outside 0 to {MAX_SEED:,}"
    if not BLOCK.match(block):
        return "not an integer or a range 'a-b'"
    low, high = _ends(block)
    if high > MAX_SEED:
        return f"outside 0 to {MAX_SEED:,}"
    if low > high:
        return "a range that runs backwards"
    if high - low + 1 > MAX_SEEDS:
        return f"more than {MAX_SEEDS} seeds"
    return None


def seeds_problem(v: list) -> str | None:
    """Why ``v`` is not a valid ``train.seeds``, or None."""
    return _seeds(v)


def _seeds(v: list) -> str | None:
    allowed = (
        f"a list of blocks of seeds, each an integer (one seed) or a range 'a-b' (a to b, both "
        f"included), e.g. [0-9] or [0-9, 10-19]: seeds from 0 to {MAX_SEED:,}, 1 to "
        f"{MAX_SEEDS} in all, none twice"
    )
    if not v:
        return allowed
    for block in v:
        problem = seed_block_problem(block)
        if problem:
            return f"{allowed} ({block!r} is {problem})"
    names = [block_name(b) for b in v]
    if len(set(names)) != len(names):
        return allowed + " (a block is listed twice)"
    # Counted from the ranges' ends (each already at most MAX_SEEDS) before any is expanded.
    total = sum(high - low + 1 for low, high in map(_ends, v))
    if total > MAX_SEEDS:
        return f"{allowed} (these blocks hold {total:,} seeds)"
    seeds = [s for b in v for s in block_seeds(b)]
    if len(set(seeds)) != len(seeds):
        twice = next(s for s in seeds if seeds.count(s) > 1)
        return f"{allowed} (seed {twice} is in two blocks)"
    return None


def grow(blocks: tuple, total: int) -> tuple[tuple, tuple[int, ...]]:
    """``blocks`` with one block more that brings the seeds to ``total``: the next seeds after
    the highest, so every seed already trained keeps its stage (DVC reruns none of them).
    Returns (the new list of blocks, the seeds added)."""
    have = [s for b in blocks for s in block_seeds(b)]
    if total <= len(have):
        return tuple(blocks), ()
    first = max(have) + 1
    added = tuple(range(first, first + total - len(have)))
    block = added[0] if len(added) == 1 else f"{added[0]}-{added[-1]}"
    return (*blocks, block), added


def _device(v: str) -> str | None:
    if v in DEVICES or re.fullmatch(r"cuda:\d+", v):
        return None
    return "one of " + ", ".join(DEVICES) + " (k: a GPU's index, e.g. cuda:1)"


def _per_step(v: int | str) -> str | None:
    if v == "auto" or (isinstance(v, int) and 1 <= v <= MAX_SEEDS):
        return None
    return f"auto or an integer from 1 to {MAX_SEEDS}"


def _source(v: str) -> str | None:
    return (
        None
        if v.strip()
        else "cifar10, synthetic, an http(s) URL, or the path of an archive or folder"
    )


def _knob(kind, check=None, default: Any = None, key: str | None = None, **kw):
    """A dataclass field with the type and range check the loader applies; ``key``: its name
    in params.yaml where that differs from the field's."""
    meta = {"kind": kind, "check": check, "key": key}
    if "default_factory" in kw:
        return field(default_factory=kw["default_factory"], metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class SyntheticParams:
    """Sizes of the generated CIFAR-format archive used offline and in tests."""

    # At most 100,000 / 20,000: a batch file of the generated archive stays under the
    # size cap that real CIFAR-10 batches are read with (cifar10_tricks.cifar.MAX_MEMBER_BYTES).
    n_train: int = _knob(int, _integer(10, 100_000), default=5000)
    n_test: int = _knob(int, _integer(10, 20_000), default=1000)
    seed: int = _knob(int, _integer(0, MAX_SEED), default=0)
    # Pixel noise around each class's pattern, on the 0-255 scale; larger is harder.
    noise: float = _knob(float, _between(0, 10_000), default=120.0)


@dataclass(frozen=True)
class DataParams:
    source: str = _knob(str, _source, default="cifar10")
    md5: str | None = _knob((str, type(None)), _md5, default=None)
    synthetic: SyntheticParams = _knob(SyntheticParams, default_factory=SyntheticParams)


@dataclass(frozen=True)
class TrainParams:
    epochs: int = _knob(int, _integer(1, 10_000), default=10)
    # Blocks of seeds (one DVC train stage per variant and block): ``7`` or ``"0-9"``.
    seeds: tuple[int | str, ...] = _knob(list, _seeds, default_factory=lambda: ("0-9",))
    # At most this many seeds of a block train together in one step (auto:
    # device.seeds_per_step).
    seeds_per_step: int | str = _knob((int, str), _per_step, default="auto")
    device: str = _knob(str, _device, default="auto")
    precision: str = _knob(str, _one_of(PRECISIONS), default="auto")
    # true: deterministic kernels (bitwise repeatable on one device); false: faster on GPU.
    deterministic: bool = _knob(bool, default=True)

    @property
    def all_seeds(self) -> tuple[int, ...]:
        """Every seed of every block, in the order params.yaml lists them."""
        return tuple(s for block in self.seeds for s in block_seeds(block))


@dataclass(frozen=True)
class Variant:
    """One variant: every knob of the training recipe, each a line of LeCun's slide
    (docs/pipeline.md).  The defaults are the blog's baseline."""

    normalize: bool = _knob(bool, default=False)
    lr: float = _knob(float, _between(0, 1e6, low_open=True), default=1e-3)
    lr_decay: float = _knob(
        float, _between(0, 1, low_open=True, note=" (1: no decay)"), default=1.0
    )
    weight_decay: float = _knob(float, _between(0, 1), default=0.0)
    l1: float = _knob(float, _between(0, 1), default=0.0)
    # The first epoch (from 0) at which weight_decay and l1 apply: 0 from the start, as the
    # blog did; the slide starts them after a few epochs.
    regularize_from: int = _knob(int, _integer(0, 10_000), default=0)
    init: str = _knob(str, _one_of(INITS), default="default")
    dropout_conv: float = _knob(float, _probability, default=0.0)
    dropout_dense: float = _knob(float, _probability, default=0.0)
    activation: str = _knob(str, _one_of(ACTIVATIONS), default="relu")
    loss: str = _knob(str, _one_of(LOSSES), default="cross_entropy")
    optimizer: str = _knob(str, _one_of(OPTIMIZERS), default="adam")
    # SGD's momentum (0: plain SGD); must be 0 with adam, whose betas are fixed.
    momentum: float = _knob(float, _probability, default=0.0)
    batch_size: int = _knob(int, _integer(1, 100_000), default=64)  # images per step
    shuffle: str = _knob(str, _one_of(SHUFFLES), default="every_epoch")


@dataclass(frozen=True)
class CompareParams:
    baseline: str = _knob(str, default="baseline")
    alpha: float = _knob(float, _open_unit, default=0.05)
    # The t-test, params key `test`: paired, on the per-seed differences (seed s of every
    # variant shares its data order and, for the same init, its initial weights); welch:
    # seeds as independent samples.
    method: str = _knob(str, _one_of(METHODS), default="paired", key="test")
    # Family-wise correction of the table's p-values before the verdicts: holm | none.
    correction: str = _knob(str, _one_of(CORRECTIONS), default="holm")
    # Which rung each variant is compared with besides the baseline; a variant not
    # named here is compared with the one listed before it in `study`.
    parents: dict = _knob(dict, default_factory=dict)
    # LeCun's slide trick by trick: per trick, per context (bare: on a bare model or its ladder
    # rung; full: taken out of the full recipe), pairs [with the trick, without it].  A pair
    # whose variants are not both in `study` is left out.
    tricks: dict = _knob(dict, default_factory=dict)


@dataclass(frozen=True)
class Params:
    data: DataParams
    train: TrainParams
    variants: dict[str, Variant]  # every variant defined
    compare: CompareParams
    study: tuple[str, ...] = ()  # the variants trained and compared, in ladder order
    studies: dict[str, tuple[str, ...]] = field(default_factory=dict)  # by name

    @property
    def studied(self) -> dict[str, Variant]:
        """The variants of ``study``, in its order."""
        return {name: self.variants[name] for name in self.study}


# --- loading --------------------------------------------------------------------------


def _show(value: Any) -> str:
    """``repr(value)``, cut short: a value in an error message is never a wall of text."""
    import reprlib

    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother = 3, 60, 60
    short.maxlist = short.maxtuple = short.maxdict = 6
    return short.repr(value)


def _type_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        type(None): "null",
    }
    return " or ".join(names.get(k, "a mapping") for k in kinds)


def _coerce(value: Any, kind, where: str):
    """Check the YAML value's type; an integer where a number is asked for is that number.
    A quoted number stays a string, as DVC records it, and is refused."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    ok = any(isinstance(value, k) and not (k is int and isinstance(value, bool)) for k in kinds)
    if not ok:
        raise ParamsError(f"{where} = {_show(value)} is not {_type_name(kind)}.")
    return value


def _allowed(f) -> str:
    """What field ``f`` must hold, in the words of its check (or its type)."""
    kind, check = f.metadata["kind"], f.metadata["check"]
    if isinstance(kind, type) and hasattr(kind, "__dataclass_fields__"):
        return "a mapping with the keys " + ", ".join(
            g.metadata.get("key") or g.name for g in fields(kind)
        )
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # A value every check refuses, so that it answers with what it allows.
    refused = float("nan") if {int, float} & set(kinds) - {str} else [] if list in kinds else ""
    return (check(refused) if check else None) or _type_name(kind)


def build(cls, raw: Any, where: str):
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and bad values."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{where} must be a mapping of keys to values, not {_show(raw)}.")
    known = {f.metadata.get("key") or f.name: f for f in fields(cls)}  # by params.yaml key
    unknown = sorted(set(raw) - set(known), key=str)
    if unknown:
        raise ParamsError(
            f"{where}: unknown key {_show(unknown[0])}; allowed keys are " + ", ".join(known) + "."
        )
    missing = [name for name in known if name not in raw]
    if missing:
        name = missing[0]
        raise ParamsError(
            f"params.yaml: {where}.{name} is missing; it must be {_allowed(known[name])}. "
            "Every key is required, so that what a stage runs with is what DVC records: add it."
        )
    values = {}
    for name, f in known.items():
        key = f"{where}.{name}"
        kind, check = f.metadata["kind"], f.metadata["check"]
        if isinstance(kind, type) and hasattr(kind, "__dataclass_fields__"):
            values[f.name] = build(kind, raw[name], key)
            continue
        value = _coerce(raw[name], kind, key)
        problem = check(value) if check else None
        if problem:
            raise ParamsError(f"{key} = {_show(raw[name])} is not allowed; it must be {problem}.")
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def parent_of(names: list[str], name: str, parents: dict[str, str]) -> str | None:
    """The rung ``name`` is compared with besides the baseline: ``compare.parents``' entry, else
    the variant listed before it (None for the first)."""
    if name in parents:
        return parents[name]
    i = names.index(name)
    return names[i - 1] if i > 0 else None


def _refuse_cycles(names: list[str], parents: dict[str, str]) -> None:
    """A ladder's parents lead back to its first rung; a loop (a: b and b: a, or through the
    rungs listed before) compares rungs with each other and none with where they start."""
    for start in names:
        path, node = [start], parent_of(names, start, parents)
        while node is not None:
            if node in path:
                loop = " -> ".join(path[path.index(node) :] + [node])
                raise ParamsError(
                    f"compare.parents makes a loop ({loop}, counting a variant without an entry "
                    "as built on the one listed before it); point one of them at the rung it "
                    "builds on."
                )
            path.append(node)
            node = parent_of(names, node, parents)


def parse(raw: Any) -> Params:
    """Validate the parsed YAML document into :class:`Params`."""
    if not isinstance(raw, dict):
        raise ParamsError(
            "params.yaml must be a mapping with sections data, train, variants, study, studies, "
            "compare."
        )
    allowed = ("data", "train", "variants", "study", "studies", "compare")
    unknown = sorted(set(raw) - set(allowed), key=str)
    if unknown:
        raise ParamsError(
            f"params.yaml: unknown top-level key {_show(unknown[0])}; allowed: "
            + ", ".join(allowed)
            + "."
        )
    raw_variants = raw.get("variants")
    if not isinstance(raw_variants, dict) or not raw_variants:
        raise ParamsError(
            "params.yaml: `variants` must list at least one variant, e.g. "
            "`variants: {baseline: {lr: 0.001}}`."
        )
    variants = {}
    for name, spec in raw_variants.items():
        if not isinstance(name, str) or not VARIANT_NAME.match(name):
            raise ParamsError(
                f"variants: name {_show(name)} is not allowed; use a letter followed by up to 63 "
                "letters, digits or '_' (it becomes a file name and part of DVC's stage names, "
                "train@<variant>-<seeds>, where '-' joins it to its seeds)."
            )
        variants[name] = build(Variant, spec, f"variants.{name}")
        if variants[name].optimizer == "adam" and variants[name].momentum != 0:
            raise ParamsError(
                f"variants.{name}.momentum = {variants[name].momentum} is not allowed with "
                "optimizer adam (its betas are fixed); set it to 0, or optimizer: sgd."
            )
    lowered = [n.lower() for n in variants]
    clash = next((n for n in variants if lowered.count(n.lower()) > 1), None)
    if clash:
        raise ParamsError(
            f"variants: {_show(clash)} differs from another name only in case; the two would share "
            "a results folder on some file systems. Rename one."
        )
    absent = next((k for k in allowed if k not in raw), None)
    if absent:
        raise ParamsError(
            f"params.yaml has no `{absent}` section; it needs all of " + ", ".join(allowed) + "."
        )
    study = _study(raw["study"], variants)
    studies = raw["studies"]
    if not isinstance(studies, dict) or not all(
        isinstance(k, str) and VARIANT_NAME.match(k) for k in studies
    ):
        raise ParamsError(
            f"studies = {_show(studies)} is not allowed; it must map a study's name (a word) to "
            "a list of variants, e.g. {blog: [baseline, norm_inputs]}."
        )
    studies = {name: _study(names, variants, f"studies.{name}") for name, names in studies.items()}
    compare = build(CompareParams, raw.get("compare"), "compare")
    if compare.baseline not in study:
        raise ParamsError(
            f"compare.baseline = {_show(compare.baseline)} is not in `study`; choose one of "
            + ", ".join(study)
            + ", or add it to the study."
        )
    for child, parent in compare.parents.items():
        if (
            not isinstance(child, str)
            or not isinstance(parent, str)
            or not (child in variants and parent in variants)
        ):
            raise ParamsError(
                f"compare.parents: {_show(child)}: {_show(parent)} must name two variants from "
                + ", ".join(variants)
                + "."
            )
        if child == parent:
            raise ParamsError(
                f"compare.parents: {child}: {parent} compares a variant with itself, so it would "
                "drop out of the answer; name the rung it builds on, or remove the entry."
            )
        if child in study and parent not in study:
            raise ParamsError(
                f"compare.parents: {child}: {parent} names a variant the study does not train; "
                f"add {parent} to `study`, or remove the entry."
            )
    _refuse_cycles(list(study), compare.parents)
    _check_tricks(compare.tricks, variants)
    return Params(
        data=build(DataParams, raw.get("data"), "data"),
        train=build(TrainParams, raw.get("train"), "train"),
        variants=variants,
        compare=compare,
        study=study,
        studies=studies,
    )


CONTEXTS = (
    "bare",
    "full",
)  # compare.tricks: on a bare model (or its ladder rung); in the full recipe


def _study(raw: Any, variants: dict, where: str = "study") -> tuple[str, ...]:
    """``study`` (or a list of ``studies``): the variants to train and compare, each once, every
    one defined."""
    if not isinstance(raw, list) or not raw:
        raise ParamsError(
            f"{where} = {_show(raw)} is not allowed; it must be a list of the variants to train "
            "and compare, in ladder order, e.g. [baseline, norm_inputs]."
        )
    for name in raw:
        if not isinstance(name, str) or name not in variants:
            shown = ", ".join(list(variants)[:12]) + (", ..." if len(variants) > 12 else "")
            raise ParamsError(
                f"{where}: {_show(name)} is not a variant; define it under `variants`, or choose "
                f"from {shown}."
            )
    twice = next((n for n in raw if raw.count(n) > 1), None)
    if twice:
        raise ParamsError(f"{where}: {twice!r} is listed twice; list each variant once.")
    return tuple(raw)


def _check_tricks(tricks: dict, variants: dict) -> None:
    """compare.tricks: trick -> {bare|full: [[with, without], ...]}, every name a variant."""
    for trick, contexts in tricks.items():
        where = f"compare.tricks.{trick}"
        if not isinstance(trick, str) or not VARIANT_NAME.match(trick):
            raise ParamsError(f"compare.tricks: {_show(trick)} is not a trick's name (a word).")
        if not isinstance(contexts, dict) or not contexts or set(contexts) - set(CONTEXTS):
            raise ParamsError(
                f"{where} = {_show(contexts)} is not allowed; it must map "
                + " and/or ".join(CONTEXTS)
                + " to pairs [with the trick, without it]."
            )
        for context, pairs in contexts.items():
            ok = isinstance(pairs, list) and all(
                isinstance(p, list)
                and len(p) == 2
                and all(v in variants for v in p)
                and p[0] != p[1]
                for p in pairs
            )
            if not ok:
                raise ParamsError(
                    f"{where}.{context} = {_show(pairs)} is not allowed; it must be a list of "
                    "pairs [with the trick, without it] of two different variants."
                )


MAX_PARAMS_BYTES = 2**20  # the default params.yaml is 4 KB; a thousand variants fit in 1 MB


def load(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``path``; any problem raises :class:`ParamsError`.

    The file is read as DVC reads it (ruamel.yaml's safe loader, YAML 1.2), so the value a
    stage runs with is the value `dvc params diff` and `dvc exp show` record: ``010`` is 10,
    ``yes`` is the string "yes", merge keys (``<<:``) work.  Duplicate keys are refused.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import YAMLError

    path = Path(path)
    try:
        if (size := path.stat().st_size) > MAX_PARAMS_BYTES:
            raise ParamsError(
                f"{path} is {size:,} bytes; params.yaml is a few KB (at most "
                f"{MAX_PARAMS_BYTES:,} bytes are read). Check that it is the right file."
            )
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ParamsError(
            f"cannot read {path}: {exc.strerror or exc}. Run the stage from the project root, "
            "where params.yaml lives."
        ) from None
    except UnicodeDecodeError as exc:
        raise ParamsError(
            f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
            "save it as UTF-8."
        ) from None
    try:
        raw = YAML(typ="safe").load(text)
    except DuplicateKeyError as exc:
        key = re.search(r'found duplicate key "(.*?)"', str(exc.problem))
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise ParamsError(
            f"{path} line {line}: key {key.group(1) if key else '?'!r} is given twice; "
            "keep one of them."
        ) from None
    except (YAMLError, TypeError, ValueError) as exc:
        raise ParamsError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ParamsError(f"{path} is nested too deeply to be params.yaml.") from None
    return parse(raw)
