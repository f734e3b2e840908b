"""The params.yaml schema: read once, into typed, validated, frozen objects.

The stages that read params (download, train, compare) call :func:`load` and use only the
sections ``dvc.yaml`` lists as their params, so an edit elsewhere reruns nothing.  The
whole file is validated on every load, so a typo anywhere fails at the first such stage
with a message that names the key, the value and what is allowed, never halfway through
a run.

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

import yaml

from stages.io import UserError

# Safe as a file name, a DVC stage name (train@<name>) and a `dvc exp run -S` key.
VARIANT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
DEVICES = ("auto", "cpu", "cuda", "cuda:<k>", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
INITS = ("default", "kaiming_uniform")
CORRECTIONS = ("holm", "none")


class ParamsError(UserError):
    """params.yaml is missing, unreadable or holds a value outside what is allowed."""


# --- checks: each returns an error text (what is allowed) or None --------------------


def _positive(v: float) -> str | None:
    return None if math.isfinite(v) and v > 0 else "a finite number > 0"


def _non_negative(v: float) -> str | None:
    return None if math.isfinite(v) and v >= 0 else "a finite number >= 0"


def _gamma(v: float) -> str | None:
    return None if 0 < v <= 1 else "a number in (0, 1] (1 means no decay)"


def _probability(v: float) -> str | None:
    return None if 0 <= v < 1 else "a probability in [0, 1)"


def _at_least(n: int) -> Callable[[int], str | None]:
    return lambda v: None if v >= n else f"an integer >= {n}"


def _open_unit(v: float) -> str | None:
    return None if 0 < v < 1 else "a number in (0, 1)"


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str | None]:
    return lambda v: None if v in choices else "one of " + ", ".join(choices)


def _md5(v: str | None) -> str | None:
    if v is None or re.fullmatch(r"[0-9a-f]{32}", v):
        return None
    return "null or 32 lower-case hex digits"


def _seeds(v: list) -> str | None:
    if not v:
        return "a non-empty list of distinct integers >= 0"
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in v):
        return "a non-empty list of distinct integers >= 0"
    if len(set(v)) != len(v):
        return "a list of distinct integers >= 0 (a seed is listed twice)"
    return None


def _device(v: str) -> str | None:
    if v in DEVICES or re.fullmatch(r"cuda:\d+", v):
        return None
    return "one of " + ", ".join(DEVICES) + " (k: a GPU's index, e.g. cuda:1)"


def _per_step(v: int | str) -> str | None:
    if v == "auto" or (isinstance(v, int) and v >= 1):
        return None
    return "auto or an integer >= 1"


def _source(v: str) -> str | None:
    return (
        None
        if v.strip()
        else "cifar10, synthetic, an http(s) URL, or the path of an archive or folder"
    )


def _knob(kind, check=None, default: Any = None, **kw):
    """A dataclass field with the type and range check the loader applies."""
    meta = {"kind": kind, "check": check}
    if "default_factory" in kw:
        return field(default_factory=kw["default_factory"], metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class SyntheticParams:
    """Sizes of the generated CIFAR-format archive used offline and in tests."""

    n_train: int = _knob(int, _at_least(10), default=5000)
    n_test: int = _knob(int, _at_least(10), default=1000)
    seed: int = _knob(int, _at_least(0), default=0)
    # Pixel noise around each class's pattern, on the 0-255 scale; larger is harder.
    noise: float = _knob(float, _non_negative, default=120.0)


@dataclass(frozen=True)
class DataParams:
    source: str = _knob(str, _source, default="cifar10")
    md5: str | None = _knob((str, type(None)), _md5, default=None)
    synthetic: SyntheticParams = _knob(SyntheticParams, default_factory=SyntheticParams)


@dataclass(frozen=True)
class TrainParams:
    epochs: int = _knob(int, _at_least(1), default=10)
    batch_size: int = _knob(int, _at_least(1), default=64)
    seeds: tuple[int, ...] = _knob(list, _seeds, default_factory=lambda: tuple(range(10)))
    # At most this many seeds train together in one step; auto: stages.device.seeds_per_step.
    seeds_per_step: int | str = _knob((int, str), _per_step, default="auto")
    device: str = _knob(str, _device, default="auto")
    precision: str = _knob(str, _one_of(PRECISIONS), default="auto")
    # true: deterministic kernels (bitwise repeatable on one device); false: faster on GPU.
    deterministic: bool = _knob(bool, default=True)


@dataclass(frozen=True)
class Variant:
    """One rung of the ladder: every knob of the training recipe."""

    normalize: bool = _knob(bool, default=False)
    lr: float = _knob(float, _positive, default=1e-3)
    lr_decay: float = _knob(float, _gamma, default=1.0)
    weight_decay: float = _knob(float, _non_negative, default=0.0)
    l1: float = _knob(float, _non_negative, default=0.0)
    init: str = _knob(str, _one_of(INITS), default="default")
    dropout_conv: float = _knob(float, _probability, default=0.0)
    dropout_dense: float = _knob(float, _probability, default=0.0)


@dataclass(frozen=True)
class CompareParams:
    baseline: str = _knob(str, default="baseline")
    alpha: float = _knob(float, _open_unit, default=0.05)
    # Family-wise correction of the table's p-values before the verdicts: holm | none.
    correction: str = _knob(str, _one_of(CORRECTIONS), default="holm")
    # Which rung each variant is compared with besides the baseline; a variant not
    # named here is compared with the one listed before it in `variants`.
    parents: dict = _knob(dict, default_factory=dict)


@dataclass(frozen=True)
class Params:
    data: DataParams
    train: TrainParams
    variants: dict[str, Variant]
    compare: CompareParams


# --- loading --------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys instead of keeping the last."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ParamsError(
                f"params.yaml line {key_node.start_mark.line + 1}: key {key!r} is given twice; "
                "keep one of them."
            )
        seen.add(key)
    return loader.construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


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
    """Check the YAML value's type; numbers written 1e-3 (a string to YAML 1.1) are numbers."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    ok = any(isinstance(value, k) and not (k is int and isinstance(value, bool)) for k in kinds)
    if not ok:
        raise ParamsError(f"{where} = {value!r} is not {_type_name(kind)}.")
    return value


def build(cls, raw: Any, where: str):
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and bad values."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{where} must be a mapping of keys to values, not {raw!r}.")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known), key=str)
    if unknown:
        raise ParamsError(
            f"{where}: unknown key {unknown[0]!r}; allowed keys are " + ", ".join(known) + "."
        )
    values = {}
    for name, f in known.items():
        if name not in raw:
            continue
        key = f"{where}.{name}"
        kind, check = f.metadata["kind"], f.metadata["check"]
        if isinstance(kind, type) and hasattr(kind, "__dataclass_fields__"):
            values[name] = build(kind, raw[name], key)
            continue
        value = _coerce(raw[name], kind, key)
        problem = check(value) if check else None
        if problem:
            raise ParamsError(f"{key} = {raw[name]!r} is not allowed; it must be {problem}.")
        values[name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def parse(raw: Any) -> Params:
    """Validate the parsed YAML document into :class:`Params`."""
    if not isinstance(raw, dict):
        raise ParamsError("params.yaml must be a mapping with sections data, train, variants.")
    allowed = ("data", "train", "variants", "compare")
    unknown = sorted(set(raw) - set(allowed), key=str)
    if unknown:
        raise ParamsError(
            f"params.yaml: unknown top-level key {unknown[0]!r}; allowed: "
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
                f"variants: name {name!r} is not allowed; use a letter followed by up to 63 "
                "letters, digits, '_' or '-' (it becomes a file name and a DVC stage name)."
            )
        variants[name] = build(Variant, spec, f"variants.{name}")
    lowered = [n.lower() for n in variants]
    clash = next((n for n in variants if lowered.count(n.lower()) > 1), None)
    if clash:
        raise ParamsError(
            f"variants: {clash!r} differs from another name only in case; the two would share "
            "a results folder on some file systems. Rename one."
        )
    compare = build(CompareParams, raw.get("compare"), "compare")
    if compare.baseline not in variants:
        raise ParamsError(
            f"compare.baseline = {compare.baseline!r} is not a variant; choose one of "
            + ", ".join(variants)
            + "."
        )
    for child, parent in compare.parents.items():
        if child not in variants or parent not in variants:
            raise ParamsError(
                f"compare.parents: {child!r}: {parent!r} must name two variants from "
                + ", ".join(variants)
                + "."
            )
    return Params(
        data=build(DataParams, raw.get("data"), "data"),
        train=build(TrainParams, raw.get("train"), "train"),
        variants=variants,
        compare=compare,
    )


def load(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``path``; any problem raises :class:`ParamsError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ParamsError(
            f"cannot read {path}: {exc.strerror or exc}. Run the stage from the project root, "
            "where params.yaml lives."
        ) from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from None
    return parse(raw)
