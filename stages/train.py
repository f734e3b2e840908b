"""Stage `train@<variant>-<seeds>`: train one fresh model per seed of one block of seeds.

Inputs:  the data file (`download`), the train-set stats (`stats`); ``--seeds``, the block
         (``0-9``: seeds 0 to 9; ``7``: seed 7), one of ``train.seeds``, which DVC's
         ``matrix`` turns into one stage per variant and block: adding a block adds stages
         and retrains no seed already trained.
Params:  ``train`` (epochs, seeds_per_step, device, precision, deterministic; not
         ``seeds``: a stage's block is in its command) and ``variants.<variant>`` (every knob
         of the variant: LeCun's slide, docs/pipeline.md).
Outputs: ``<models>/seed_<s>.pt`` (state_dict + the config that rebuilds the model);
         ``<predictions>``: every seed's fp32 prediction and NLL for each test image (what
         `evaluate` scores, with no torch) and what made them (:func:`made_by`: data,
         sizes, schedule, device, precision, stack size, versions); a DVCLive folder with
         per-epoch train/test loss and accuracy, per seed (``seed_<s>/...``) and averaged over
         seeds (``train/...``, ``test/...``).

The data set lives on the device as uint8 tensors; batches are slices of each seed's order
(:class:`cifar10_tricks.step.Orders`: a seeded permutation per epoch, one for every epoch, or
by class), so no DataLoader or per-image transform sits in the hot loop.  Each batch is one
call of :func:`cifar10_tricks.step.train_step` (:func:`train_seeds`' loop).

The seeds train as one stacked model (:class:`cifar10_tricks.model.Net`): one forward, backward
and optimizer step per batch for S seeds, each seed with its own initialisation, shuffling
order and dropout masks.  The loss is the sum of the seeds' losses, so each seed's
gradient is exactly its own, and Adam or SGD, the weight decay, the L1 term and the lr schedule
act element by element: the models stay independent.  ``train.seeds_per_step`` caps how
many seeds share a step (``auto``: :func:`cifar10_tricks.device.seeds_per_step`).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from cifar10_tricks import checkpoint, cifar, curves, params, predictions, provenance, stats_file
from cifar10_tricks.cli import run_main
from cifar10_tricks.device import (
    configure_torch,
    device_name,
    pick_device,
    pick_precision,
    seeds_per_step,
)
from cifar10_tricks.errors import UserError
from cifar10_tricks.files import atomic_group, refuse_linked_folders
from cifar10_tricks.model import ModelConfig, Net, predict
from cifar10_tricks.step import Orders, Tensors, fresh_stack, to_device, train_step

log = logging.getLogger("cifar10_tricks.train")


class DivergedError(UserError):
    """The loss, the weights or the test losses became NaN or infinite."""

    @classmethod
    def at(cls, name: str, variant: params.Variant, seed: int, epoch: int, what: str, more=""):
        """The error for ``name``'s ``seed`` at ``epoch``: ``what`` went wrong, and the way
        out (``more``: a further one)."""
        return cls(
            f"variant {name!r}, seed {seed}, epoch {epoch}: {what}, so no model or metrics are "
            f"written. Lower variants.{name}.lr (now {variant.lr}) or the regularisation{more}, "
            "then rerun."
        )


def model_config(variant: params.Variant, stats: dict, classes: tuple[str, ...]) -> ModelConfig:
    return ModelConfig(
        n_classes=len(classes),
        normalize=variant.normalize,
        mean=tuple(stats["mean"]),
        std=tuple(stats["std"]),
        init=variant.init,
        dropout_conv=variant.dropout_conv,
        dropout_dense=variant.dropout_dense,
        classes=classes,
        activation=variant.activation,
    )


def evaluate_split(
    model: Net, x: torch.Tensor, y: torch.Tensor, precision: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each seed's predicted class and NLL of every image of a split, (S, N) each, in eval mode."""
    log_probs = predict(model, x, precision)  # (S, N, C)
    n, m, c = log_probs.shape
    nll = F.nll_loss(log_probs.reshape(n * m, c), y.repeat(n), reduction="none").view(n, m)
    return log_probs.argmax(-1), nll


def train_seeds(
    variant_name: str,
    variant: params.Variant,
    config: ModelConfig,
    data: Tensors,
    seeds: tuple[int, ...],
    tp: params.TrainParams,
    precision: str,
    on_epoch=None,
    cuda_graphs: bool = True,
    progress=None,
) -> tuple[Net, dict[int, list[dict]], tuple[np.ndarray, np.ndarray]]:
    """Train fresh models for ``seeds`` together for ``tp.epochs``; ``progress`` (a tqdm bar,
    say) is told of every batch.  Each batch is one :func:`cifar10_tricks.step.train_step`
    (on CUDA that same step replayed from a graph unless ``cuda_graphs`` is off).

    Returns the stacked model; per seed, one metrics dict per epoch; and the trained models'
    test predictions in fp32, (predicted class, NLL) per seed and image, (S, N) each: the
    last epoch's evaluation when training ran in fp32, else one more pass in fp32, so every
    variant is scored alike whatever precision trained it.
    """
    stack = fresh_stack(config, seeds, variant, data, precision, cuda_graphs)
    model, opt, sums = stack.model, stack.opt, stack.sums
    orders = Orders(variant.shuffle, seeds, data.y_train)  # each seed's own, on the CPU
    n, batch = len(data.x_train), variant.batch_size
    model.plan_dropout(tp.epochs * -(-n // batch))  # the hashed masks' keys, before any graph
    histories: dict[int, list[dict]] = {seed: [] for seed in seeds}
    for epoch in range(tp.epochs):
        start = time.perf_counter()
        model.train()
        sums.zero_()
        order = orders.epoch().to(data.x_train.device)
        regularize = epoch >= variant.regularize_from  # L2 and L1 from this epoch on
        for i in range(0, n, batch):
            if stack.graphs is None:
                train_step(stack, order[:, i : i + batch], regularize)
            else:  # CUDA: the same train_step, captured once per batch shape and replayed
                stack.graphs(order[:, i : i + batch], regularize)
            if progress is not None:
                progress.update(1)
        lr = opt.lr
        opt.decay()
        train = sums.tolist()
        for seed, (loss_sum, _) in zip(seeds, train):
            if not math.isfinite(loss_sum / n):
                raise DivergedError.at(
                    variant_name,
                    variant,
                    seed,
                    epoch + 1,
                    f"the training loss became {loss_sum / n}; the model diverged",
                )
        pred, nll = evaluate_split(model, data.x_test, data.y_test, precision)
        test_loss, test_acc = nll.mean(1).tolist(), (pred == data.y_test).float().mean(1).tolist()
        seconds = time.perf_counter() - start
        for s, seed in enumerate(seeds):
            row = {
                "train/loss": train[s][0] / n,
                "train/acc": train[s][1] / n,
                "test/loss": test_loss[s],
                "test/acc": test_acc[s],
                "lr": float(lr),
            }
            histories[seed].append(row)  # saved with the model: no wall time in it
            if on_epoch:
                on_epoch(seed, epoch, row, seconds)
    if precision != "fp32":
        pred, nll = evaluate_split(model, data.x_test, data.y_test, "fp32")
    # The epoch's running loss is checked above, but the epoch's last steps come after it: a
    # final step can still turn the weights to NaN.  What is saved must be finite too.
    finite = torch.isfinite(nll).all(1).tolist()
    weights = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    if not (all(finite) and weights):
        seed = seeds[finite.index(False)] if not all(finite) else seeds[0]
        raise DivergedError.at(
            variant_name,
            variant,
            seed,
            tp.epochs,
            "the trained weights or their test losses are not finite (the last steps diverged "
            "after the epoch's loss was taken)",
            f", or use a smaller variants.{variant_name}.batch_size (now {variant.batch_size})",
        )
    return model, histories, (pred.cpu().numpy(), nll.cpu().numpy())


def made_by(
    ds: cifar.Dataset,
    data_file: Path,
    tp: params.TrainParams,
    variant: params.Variant,
    seeds: tuple[int, ...],
    device: torch.device,
    precision: str,
    per_step: int,
) -> dict:
    """What made this stage's results (:mod:`cifar10_tricks.provenance`): the same on every
    run with the same params on the same kind of device, as DVC expects of an output."""
    return {
        "data": {
            "source": ds.source,
            "md5": provenance.file_md5(data_file),
            "n_train": len(ds.y_train),
            "n_test": len(ds.y_test),
        },
        "epochs": tp.epochs,
        "batch_size": variant.batch_size,
        "seeds": list(seeds),
        "device": device.type,
        "device_name": device_name(device),
        "precision": precision,
        "seeds_per_step": per_step,
        "deterministic": tp.deterministic,
        "torch": torch.__version__,
    }


def seed_stacks(seeds: tuple[int, ...], per_step: int) -> list[tuple[int, ...]]:
    """``seeds`` cut into consecutive stacks of at most ``per_step``, each trained as one model."""
    return [tuple(seeds[i : i + per_step]) for i in range(0, len(seeds), per_step)]


def block_of(text: str) -> tuple[int, ...]:
    """The seeds of ``--seeds``, a block as ``train.seeds`` writes it ("0-9", "7")."""
    block: int | str = int(text) if text.isdigit() else text
    problem = params.seed_block_problem(block)
    if problem:
        raise UserError(
            f"--seeds {text!r} is {problem}; give one block of train.seeds: a seed (7) or a "
            "range (0-9)."
        )
    return params.block_seeds(block)


def progress_bar(total_batches: int, desc: str):
    """One bar over the stage's every batch (all stacks, all epochs), with an ETA, on a
    terminal; nothing in logs, where the per-epoch lines and the estimate say it (tqdm turns
    itself off when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(
        total=total_batches, desc=desc, disable=None, unit="batch", mininterval=0.5, leave=False
    )


class Progress:
    """What a person sees while a block trains: one line per seed and epoch, then (after the
    second epoch of the first stack) how long the rest will take, and a bar over every batch."""

    def __init__(self, name: str, block: str, tp: params.TrainParams, stacks, batches: int):
        self.name, self.epochs = name, tp.epochs
        self.firsts, self.paces = {s[0] for s in stacks}, []  # each stack's epoch times
        self.total, self.stacks = tp.epochs * len(stacks), len(stacks)
        self.bar = progress_bar(len(stacks) * tp.epochs * batches, f"train {name}-{block}")

    def epoch(self, seed: int, epoch: int, row: dict, seconds: float) -> None:
        log.info(
            "%s seed %d epoch %d/%d: train loss %.4f, %.2f%% | test loss %.4f, %.2f%% "
            "| lr %.2e | %.2f s",
            self.name,
            seed,
            epoch + 1,
            self.epochs,
            row["train/loss"],
            100 * row["train/acc"],
            row["test/loss"],
            100 * row["test/acc"],
            row["lr"],
            seconds,
        )
        if seed not in self.firsts:
            return
        self.paces.append(seconds)
        # The first epoch pays the warm-up (allocations, kernel choice, a CUDA graph's
        # capture): the estimate takes the second one's pace.
        if len(self.paces) == 2 and self.total > 2:
            left = seconds * (self.total - 2)
            log.info(
                "train %s: %d more epoch(s) at the second's pace (%.1f s; the first warmed up, "
                "%.1f s): about %s",
                self.name,
                self.total - 2,
                seconds,
                self.paces[0],
                f"{left / 60:.1f} min" if left >= 90 else f"{left:.0f} s",
            )


def train_block(name, variant, config, data, stacks, tp, precision, device, progress):
    """Every stack of the block, one after another: per seed its one-seed model and its
    per-epoch history, and the stacks' test predictions (predicted class, NLL) in seed order."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    histories, models, preds, nlls = {}, {}, [], []
    # Log lines go through tqdm.write while the bar is up: never glued onto the bar's line.
    with logging_redirect_tqdm():
        for stack in stacks:
            try:
                model, stack_histories, (pred, nll) = train_seeds(
                    name, variant, config, data, stack, tp, precision, progress.epoch,
                    progress=progress.bar,
                )  # fmt: skip
            except torch.OutOfMemoryError:
                fewer = max(1, len(stack) // 2)
                raise UserError(
                    f"train {name}: a stack of {len(stack)} seed(s) does not fit in the memory "
                    f"of {device}; set fewer seeds per step, e.g. `train.seeds_per_step: "
                    f"{fewer}` in params.yaml (or `dvc exp run -S train.seeds_per_step={fewer}`)"
                    ". It is a param because in bf16 the stack size changes the last bits of "
                    "the results."
                ) from None
            histories.update(stack_histories)
            models.update({seed: model.single(s) for s, seed in enumerate(stack)})
            preds.append(pred)
            nlls.append(nll)
    progress.bar.close()
    return histories, models, np.concatenate(preds), np.concatenate(nlls)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Checked before hours of training, not after: no output goes through a linked folder.
    for out in (args.models / "seed.pt", args.live / "plots", args.predictions):
        refuse_linked_folders(out)
    p = params.load(args.params)
    if args.variant not in p.variants:
        raise UserError(
            f"no variant {args.variant!r} in {args.params}; known: {', '.join(p.variants)}."
        )
    variant, tp, seeds = p.variants[args.variant], p.train, block_of(args.seeds)
    channel_stats = stats_file.read(args.stats)
    device = pick_device(tp.device)
    precision = pick_precision(tp.precision, device)
    configure_torch(device, tp.deterministic)
    ds = load_data(args.data, device)
    data = to_device(ds, device)
    config = model_config(variant, channel_stats, ds.classes)
    per_step = seeds_per_step(tp.seeds_per_step, len(seeds), device)
    stacks = seed_stacks(seeds, per_step)
    # The work ahead, then (Progress: after the second epoch) how long it will take: a CPU run
    # of the default study is hours, and the user should learn that from the run, not the README.
    log.info(
        "train %s seeds %s: %d seed(s) x %d epoch(s) x %s images on %s (%s), %d per step "
        "(%d stack(s))",
        *(args.variant, args.seeds, len(seeds), tp.epochs, f"{len(ds.y_train):,}", device),
        *(precision, per_step, len(stacks)),
    )
    batches = -(-len(ds.y_train) // variant.batch_size)
    progress = Progress(args.variant, args.seeds, tp, stacks, batches)
    histories, models, pred, nll = train_block(
        args.variant, variant, config, data, stacks, tp, precision, device, progress
    )
    # Written only once every seed has trained (a divergence writes nothing): the checkpoints
    # and predictions together, then the curves (DVCLive's own writer).
    with atomic_group():
        for seed, model in models.items():
            checkpoint.save(
                model,
                args.models / f"seed_{seed}.pt",
                variant=args.variant,
                precision=precision,
                device=str(device),
                history=histories[seed],
            )
        made = made_by(ds, args.data, tp, variant, seeds, device, precision, per_step)
        predictions.write(args.predictions, seeds, ds.y_test, pred, nll, ds.classes, made)
    curves.write_live(args.live, histories)


def load_data(path: Path, device: torch.device) -> cifar.Dataset:
    """The data file, read while CUDA makes its context (seconds)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        loading = pool.submit(cifar.load, path)
        if device.type == "cuda":
            torch.zeros(1, device=device)
        return loading.result()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m stages.train", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--variant", required=True, help="the variant of params.yaml to train")
    parser.add_argument(
        "--seeds", required=True, help="the block of seeds to train: 0-9 (0 to 9) or 7 (one)"
    )
    parser.add_argument("--params", default="params.yaml", help="the params file (params.yaml)")
    parser.add_argument(
        "--data", type=Path, required=True, help="the data file (download's cifar10.npz)"
    )
    parser.add_argument(
        "--stats", type=Path, required=True, help="the train-set mean/std (stats.json)"
    )
    parser.add_argument("--models", type=Path, required=True, help="folder for seed_<s>.pt")
    parser.add_argument("--live", type=Path, required=True, help="DVCLive folder")
    parser.add_argument(
        "--predictions",
        type=Path,
        required=True,
        help="the .npz of every seed's test predictions, for evaluate",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    run_main(main)
