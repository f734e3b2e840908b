"""Stage `train@<variant>`: train one fresh model per seed for one variant, seeds together.

Inputs:  the data file (`download`), the train-set stats (`stats`).
Params:  ``train`` (epochs, batch_size, seeds, device, precision, deterministic) and
         ``variants.<variant>`` (the knobs of this rung of the ladder).
Outputs: ``<models>/seed_<s>.pt`` (state_dict + the config that rebuilds the model);
         ``<predictions>``: every seed's fp32 prediction and NLL for each test image (what
         `evaluate` scores, with no torch); a DVCLive folder with per-epoch train/test loss
         and accuracy, per seed (``seed_<s>/...``) and averaged over seeds (``train/...``,
         ``test/...``).

The data set lives on the device as uint8 tensors; batches are slices of a seeded
random permutation, so no DataLoader or per-image transform sits in the hot loop.

The seeds train as one stacked model (:class:`stages.model.Net`): one forward, backward
and Adam step per batch for S seeds, each seed with its own initialisation, shuffling
order and dropout masks.  The loss is the sum of the seeds' losses, so each seed's
gradient is exactly its own, and Adam, its weight decay, the L1 term and the lr schedule
act element by element: the models stay independent.  ``train.seeds_per_step`` caps how
many seeds share a step (``auto``: all of them on a GPU, as memory allows; one on a CPU,
where stacking measured slower per model).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from stages import STARTED, cifar, params
from stages.model import ModelConfig, Net, predict, save_checkpoint, stack_images
from stages.runtime import (
    UserError,
    configure_torch,
    pick_device,
    pick_precision,
    read_json,
    run_main,
    seed_everything,
    write_npz,
)

log = logging.getLogger("cifar10_tricks.train")
METRICS = ("train/loss", "train/acc", "test/loss", "test/acc")


class DivergedError(UserError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class Tensors:
    """The data set on the device: uint8 images in channels_last NCHW, int64 labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def to_device(ds: cifar.Dataset, device: torch.device) -> Tensors:
    # NHWC arrays viewed as NCHW are already channels_last in memory: no copy on the CPU.
    def images(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).permute(0, 3, 1, 2).to(device)

    def labels(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(y.astype(np.int64)).to(device)

    return Tensors(images(ds.x_train), labels(ds.y_train), images(ds.x_test), labels(ds.y_test))


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
    )


class Adam:
    """torch's Adam, run through its functional form, with an lr that decays per epoch.

    ``torch.optim.Adam`` (any ``torch.optim.Optimizer``) imports ``torch._dynamo`` when it is
    made and on every step, zero_grad and state_dict: 1.5 s per train stage on a 2-core CPU,
    4.6 s on an H100, though nothing here compiles.  No setting avoids that.  The update
    itself is ``torch.optim.adam.adam``, the functional API ``torch.optim.Adam.step`` calls
    (the same foreach, fused and capturable kernels); this class only keeps its state
    (step count, first and second moments, as torch.optim.Adam lays them out) and does
    ExponentialLR's decay, ``lr <- lr * gamma`` once per epoch.

    ``capturable``: for CUDA graphs, the lr and step counts live in device tensors updated
    in place, so a replayed step sees each epoch's lr.
    """

    def __init__(self, params, lr: float, gamma: float, weight_decay: float, device: torch.device,
                 capturable: bool = False):
        self.params = list(params)
        self.lr, self.gamma, self.weight_decay, self.capturable = lr, gamma, weight_decay, capturable
        self.foreach, self.fused = device.type == "cpu", device.type == "cuda"
        self.lr_tensor = torch.tensor(lr, device=device) if capturable else None
        on_device = capturable or self.fused
        self.state = {p: {"step": torch.zeros((), dtype=torch.float32, device=p.device if on_device else "cpu"),
                          "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                          "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
                      for p in self.params}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        from torch.optim.adam import adam

        params = [p for p in self.params if p.grad is not None]
        state = [self.state[p] for p in params]
        adam(params, [p.grad for p in params], [s["exp_avg"] for s in state], [s["exp_avg_sq"] for s in state],
             [], [s["step"] for s in state], foreach=self.foreach, fused=self.fused, capturable=self.capturable,
             amsgrad=False, beta1=0.9, beta2=0.999, eps=1e-8, maximize=False,
             lr=self.lr_tensor if self.capturable else self.lr, weight_decay=self.weight_decay)

    def decay(self) -> None:
        """End of an epoch: lr <- lr * gamma (torch's ExponentialLR)."""
        self.lr *= self.gamma
        if self.lr_tensor is not None:
            self.lr_tensor.fill_(self.lr)


def make_optimizer(model: Net, variant: params.Variant, device: torch.device, capturable: bool = False) -> Adam:
    """Adam with L2 through its weight_decay, and an lr decaying by lr_decay per epoch."""
    return Adam(model.parameters(), variant.lr, variant.lr_decay, variant.weight_decay, device, capturable)


def loss_fn(model: Net, log_probs: torch.Tensor, y: torch.Tensor, l1: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(the loss to minimise, each seed's mean NLL (S,)) for log-probs (S, B, C), labels (S, B).

    The loss sums the seeds' mean NLLs, so each seed's gradient is its own alone.  PyTorch
    has no built-in L1, so it is added here (a sum over every seed's weights: each seed's
    gradient again its own).
    """
    n, b, c = log_probs.shape
    nll = F.nll_loss(log_probs.float().reshape(n * b, c), y.reshape(-1), reduction="none").view(n, b).mean(1)
    loss = nll.sum()
    if l1 == 0:
        return loss, nll
    return loss + l1 * sum(w.abs().sum() for w in model.weights()), nll


def evaluate_split(model: Net, x: torch.Tensor, y: torch.Tensor, precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Each seed's predicted class and NLL of every image of a split, (S, N) each, in eval mode."""
    log_probs = predict(model, x, precision)  # (S, N, C)
    n, m, c = log_probs.shape
    nll = F.nll_loss(log_probs.reshape(n * m, c), y.repeat(n), reduction="none").view(n, m)
    return log_probs.argmax(-1), nll


def make_step(model: Net, opt, variant: params.Variant, data: Tensors, precision: str, sums: torch.Tensor):
    """``step(idx)``: one Adam step of every seed on its images ``idx`` (S, B), adding each
    seed's (NLL sum, correct) into ``sums`` (S, 2)."""
    device_type = data.x_train.device.type
    nhwc = data.x_train.permute(0, 2, 3, 1)  # the images as stored: (N, 32, 32, 3)

    def step(idx: torch.Tensor, set_to_none: bool = True) -> None:
        xb = stack_images(nhwc[idx].permute(0, 1, 4, 2, 3))
        yb = data.y_train[idx]
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(xb)
        loss, nll = loss_fn(model, out, yb, variant.l1)
        opt.zero_grad(set_to_none=set_to_none)
        loss.backward()
        opt.step()
        # Running sums on the device: no host sync per batch (it stalls a GPU).
        sums[:, 0] += nll.detach() * idx.shape[1]
        sums[:, 1] += (out.argmax(-1) == yb).sum(1)

    return step


class GraphedStep:
    """The same step, captured once per batch size in a CUDA graph and replayed.

    At batch 64 this model's kernels take microseconds; launching them one by one from
    Python costs more than running them.  A graph replays the whole step (indexing,
    forward, backward, Adam) in one launch.  Capture needs a few warm-up steps, so the
    parameters, Adam's state and the running sums are saved before and restored after:
    training goes on exactly from where it was, as the eager step would.
    """

    def __init__(self, step, model: Net, opt, sums: torch.Tensor, n_warmup: int = 3):
        self.step, self.model, self.opt, self.sums, self.n_warmup = step, model, opt, sums, n_warmup
        self.graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    def _capture(self, idx: torch.Tensor):
        static_idx = idx.clone()
        saved = self._snapshot()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.n_warmup):
                self.step(static_idx)
        torch.cuda.current_stream().wait_stream(side)
        self.opt.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.step(static_idx, set_to_none=False)
        self._restore(saved)
        return graph, static_idx

    def _snapshot(self):
        state = {p: {k: v.clone() for k, v in st.items()} for p, st in self.opt.state.items()}
        return [p.detach().clone() for p in self.model.parameters()], state, self.sums.clone()

    def _restore(self, saved) -> None:
        """Copy back in place: the graph holds these tensors' addresses."""
        weights, state, sums = saved
        with torch.no_grad():
            for p, s in zip(self.model.parameters(), weights):
                p.copy_(s)
            for p, st in self.opt.state.items():
                for k, v in st.items():
                    if p in state:
                        v.copy_(state[p][k])
                    else:  # state the warm-up itself created: Adam starts from zero
                        v.zero_()
            self.sums.copy_(sums)

    def __call__(self, idx: torch.Tensor) -> None:
        if idx.shape not in self.graphs:
            self.graphs[idx.shape] = self._capture(idx)
        graph, static_idx = self.graphs[idx.shape]
        static_idx.copy_(idx)
        graph.replay()


def train_seeds(
    variant_name: str,
    variant: params.Variant,
    config: ModelConfig,
    data: Tensors,
    seeds: tuple[int, ...],
    tp: params.TrainParams,
    device: torch.device,
    precision: str,
    on_epoch=None,
    cuda_graphs: bool = True,
) -> tuple[Net, dict[int, list[dict]], tuple[np.ndarray, np.ndarray]]:
    """Train fresh models for ``seeds`` together for ``tp.epochs``.

    Returns the stacked model; per seed, one metrics dict per epoch; and the trained models'
    test predictions in fp32, (predicted class, NLL) per seed and image, (S, N) each: the
    last epoch's evaluation when training ran in fp32, else one more pass in fp32, so every
    variant is scored alike whatever precision trained it.
    """
    # Python's, NumPy's and torch's global generators, from the stack's first seed: on a GPU
    # dropout draws from torch's (a seed's own init, shuffling and CPU masks have their own).
    seed_everything(seeds[0])
    model = Net(config, seeds).to(device, memory_format=torch.channels_last)
    graphed = cuda_graphs and device.type == "cuda"
    opt = make_optimizer(model, variant, device, capturable=graphed)
    # Shuffling: each seed's own generator, on the CPU, so every device sees the same order.
    orders = [torch.Generator().manual_seed(seed) for seed in seeds]
    n = len(data.x_train)
    sums = torch.zeros(len(seeds), 2, device=device,
                       dtype=torch.float32 if device.type == "mps" else torch.float64)
    step = make_step(model, opt, variant, data, precision, sums)
    if graphed:
        step = GraphedStep(step, model, opt, sums)
    histories: dict[int, list[dict]] = {seed: [] for seed in seeds}
    label = f"{variant_name} seed{'s' if len(seeds) > 1 else ''} {','.join(map(str, seeds))}"
    for epoch in range(tp.epochs):
        start = time.perf_counter()
        model.train()
        sums.zero_()
        perm = torch.stack([torch.randperm(n, generator=g) for g in orders]).to(device)
        for i in _progress(range(0, n, tp.batch_size), f"{label} epoch {epoch + 1}"):
            step(perm[:, i : i + tp.batch_size])
        lr = opt.lr
        opt.decay()
        train = sums.tolist()
        for seed, (loss_sum, _) in zip(seeds, train):
            if not math.isfinite(loss_sum / n):
                raise DivergedError(
                    f"variant {variant_name!r}, seed {seed}, epoch {epoch + 1}: the training loss became "
                    f"{loss_sum / n}; the model diverged, so no model or metrics are written. Lower "
                    f"variants.{variant_name}.lr (now {variant.lr}) or the regularisation, then rerun."
                )
        pred, nll = evaluate_split(model, data.x_test, data.y_test, precision)
        test_loss, test_acc = nll.mean(1).tolist(), (pred == data.y_test).float().mean(1).tolist()
        seconds = time.perf_counter() - start
        for s, seed in enumerate(seeds):
            row = {"train/loss": train[s][0] / n, "train/acc": train[s][1] / n,
                   "test/loss": test_loss[s], "test/acc": test_acc[s], "lr": float(lr), "seconds": seconds}
            histories[seed].append(row)
            if on_epoch:
                on_epoch(seed, epoch, row)
    if precision != "fp32":
        pred, nll = evaluate_split(model, data.x_test, data.y_test, "fp32")
    return model, histories, (pred.cpu().numpy(), nll.cpu().numpy())


def seed_groups(seeds: tuple[int, ...], per_step: int) -> list[tuple[int, ...]]:
    """``seeds`` in consecutive groups of at most ``per_step``, each trained as one stack."""
    return [tuple(seeds[i : i + per_step]) for i in range(0, len(seeds), per_step)]


# Device memory one seed takes in a stacked step, with room to spare: evaluating a batch of
# 256 test images holds ~30 MB of conv1 activations per seed (fp32), training a batch of 64
# ~25 MB of saved activations; Adam's state is ~2 MB.
SEED_BYTES = 128 * 2**20


def seeds_per_step(requested: int | str, n_seeds: int, device: torch.device, precision: str) -> int:
    """How many seeds share one step: ``train.seeds_per_step``, or for ``auto`` all that
    fit half the free memory of a GPU, and one on a CPU (there a stack of S trains fewer
    images per second per model than S seeds one after another: 0.85-0.88x for S = 3 on a
    2-core EPYC, `bench_train --seeds`; a GPU at batch 64 is launch-bound, so S seeds cost
    about one)."""
    if requested != "auto":
        return max(1, min(int(requested), n_seeds))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    elif device.type == "mps":
        free = torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory()
    else:
        return 1
    bytes_per_seed = SEED_BYTES // (2 if precision == "bf16" else 1)
    return max(1, min(n_seeds, int(free * 0.5) // bytes_per_seed))


def _progress(it, desc: str):
    """A progress bar on a terminal; nothing in logs (tqdm turns itself off there)."""
    from tqdm import tqdm

    return tqdm(it, desc=desc, leave=False, disable=None, unit="batch", mininterval=0.5)


def mean_history(histories: list[list[dict]]) -> list[dict]:
    """Per-epoch mean over seeds of each metric."""
    return [{k: float(np.mean([h[e][k] for h in histories])) for k in METRICS}
            for e in range(len(histories[0]))]


def write_predictions(target: Path, seeds, y_true: np.ndarray, pred: np.ndarray, nll: np.ndarray,
                      classes: tuple[str, ...]) -> None:
    """The trained models' test predictions, what `evaluate` scores: uncompressed .npz, no pickles.

    ``seeds`` (S,), ``y_true`` (N,), ``pred`` (S, N) predicted class and ``nll`` (S, N) the
    negative log-likelihood of the true class, per seed and test image; ``classes``.
    """
    write_npz(target, seeds=np.asarray(seeds, dtype=np.int64), y_true=y_true.astype(np.int64),
              pred=pred.astype(np.int64), nll=nll.astype(np.float32), classes=np.array(classes, dtype=str))


def write_live(live_dir: Path, histories: dict[int, list[dict]]) -> None:
    """Per-epoch curves as DVCLive plot data: per seed, and the mean over seeds."""
    from dvclive import Live

    # Only the plot files: Live.end() would add a summary metrics.json (a last-epoch
    # value per curve) that would crowd `dvc metrics show`; evaluate writes the metrics.
    live = Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None)
    series = {f"seed_{s}/": h for s, h in histories.items()}
    series[""] = mean_history(list(histories.values()))
    for prefix, history in series.items():
        for epoch, row in enumerate(history):
            live.step = epoch
            for key in METRICS:
                live.log_metric(prefix + key, row[key])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", required=True)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--stats", type=Path, required=True)
    parser.add_argument("--models", type=Path, required=True, help="folder for seed_<s>.pt")
    parser.add_argument("--live", type=Path, required=True, help="DVCLive folder")
    parser.add_argument("--predictions", type=Path, required=True,
                        help="the .npz of every seed's test predictions, for evaluate")
    args = parser.parse_args(argv)

    p = params.load(args.params)
    if args.variant not in p.variants:
        raise UserError(f"no variant {args.variant!r} in {args.params}; known: {', '.join(p.variants)}.")
    variant, tp = p.variants[args.variant], p.train
    stats = read_json(args.stats, "stats")
    device = pick_device(tp.device)
    precision = pick_precision(tp.precision, device)
    configure_torch(device, tp.deterministic)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:  # read the data file while CUDA makes its context (seconds)
        loading = pool.submit(cifar.load, args.data)
        if device.type == "cuda":
            torch.zeros(1, device=device)
        ds = loading.result()
    data = to_device(ds, device)
    config = model_config(variant, stats, ds.classes)
    per_step = seeds_per_step(tp.seeds_per_step, len(tp.seeds), device, precision)
    log.info("train %s on %s (%s), %d images, seeds %s, %d per step; data on the device %.2f s after start",
             args.variant, device, precision, len(ds.y_train), list(tp.seeds), per_step,
             time.perf_counter() - STARTED)

    def report(seed, epoch, row):
        log.info("%s seed %d epoch %d/%d: train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%% "
                 "| lr %.2e | %.2f s", args.variant, seed, epoch + 1, tp.epochs, row["train/loss"],
                 100 * row["train/acc"], row["test/loss"], 100 * row["test/acc"], row["lr"], row["seconds"])

    histories, models, preds, nlls = {}, {}, [], []
    for group in seed_groups(tp.seeds, per_step):
        model, group_histories, (pred, nll) = train_seeds(args.variant, variant, config, data, group, tp,
                                                          device, precision, report)
        histories.update(group_histories)
        models.update({seed: model.single(s) for s, seed in enumerate(group)})
        preds.append(pred)
        nlls.append(nll)
    # Written only once every seed has trained: a divergence writes nothing.
    for seed, model in models.items():
        save_checkpoint(model, args.models / f"seed_{seed}.pt", variant=args.variant,
                        precision=precision, device=str(device), history=histories[seed])
    write_predictions(args.predictions, tp.seeds, ds.y_test, np.concatenate(preds), np.concatenate(nlls),
                      ds.classes)
    write_live(args.live, histories)


if __name__ == "__main__":
    run_main(main)
