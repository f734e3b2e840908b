"""Benchmark: three ways to train S seeds of the CNN, one Adam step of all S at a time.

    python -m benchmarks.bench_stack [--seeds 1,3,10] [--rounds 7] [--steps 10] [--device cpu]

For each S it times one training step (forward, backward, Adam) of S independent models at
batch 64, fp32 (or ``--precision bf16`` under autocast), three ways, alternating in rounds so
machine noise hits all of them, and reports medians:

  grouped     the project's Net with S seeds: every layer's weights stacked, convolutions
              with groups=S, the dense layers as batched matmuls (cifar10_tricks.model.Net)
  vmap        torch.func: the one-seed Net's parameters stacked by stack_module_state,
              its forward run through functional_call under vmap
  sequential  S one-seed Nets, one step each, one after another

The three start from the same weights (each seed's own initialisation) and see the same
images, and the report gives their first losses' largest relative difference: they must
compute the same step for the timing to compare like with like.  Throughput is training
images per second per model.  No dropout: the project's CPU masks run outside autograd's
tracing (NumPy), which vmap cannot batch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

WAYS = ("grouped", "vmap", "sequential")


def build(way: str, n_seeds: int, device, batch: int = 64, precision: str = "fp32", layout=None):
    """``(step, first_losses)``: a closure running one Adam step of ``n_seeds`` models the
    given way, and each seed's loss on its first step, (S,) on the CPU.  ``layout``: the
    memory format of the models and their inputs (default channels_last; vmap's stacked
    5-d weights have none)."""
    import torch

    layout = layout or torch.channels_last

    from cifar10_tricks.model import ModelConfig, Net, stack_images
    from cifar10_tricks.step import Adam, loss_fn

    cfg = ModelConfig(init="kaiming_uniform")
    seeds = tuple(range(n_seeds))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n_seeds, batch, 3, 32, 32), dtype=torch.uint8, generator=g).to(
        device
    )
    y = torch.randint(0, 10, (n_seeds, batch), generator=g).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def adam(params):
        return Adam(params, 2e-3, 0.8, 1e-4, device)

    if way == "grouped":
        model = Net(cfg, seeds).to(device, memory_format=layout)
        model.memory_format = layout
        opt, xb = adam(model.parameters()), stack_images(x).contiguous(memory_format=layout)

        def step():
            with autocast:
                losses = loss_fn(model, model(xb), y, l1=0.0)[1]  # each seed's mean NLL
            opt.zero_grad()
            losses.sum().backward()
            opt.step()
            return losses
    elif way == "vmap":
        from torch.func import functional_call, stack_module_state, vmap

        params, buffers = stack_module_state([Net(cfg, (s,)).to(device) for s in seeds])
        base = Net(cfg, (0,)).to("meta")
        base.memory_format = torch.contiguous_format  # vmap supports no other
        opt = adam(params.values())

        def one(p, b, images):  # one seed's (1, B, C) log-probs
            return functional_call(base, (p, b), (images,))

        forward = vmap(one)

        def step():
            with autocast:
                losses = loss_fn(base, forward(params, buffers, x)[:, 0], y, l1=0.0)[1]
            opt.zero_grad()
            losses.sum().backward()
            opt.step()
            return losses
    elif way == "sequential":
        models = [Net(cfg, (s,)).to(device, memory_format=layout) for s in seeds]
        for m in models:
            m.memory_format = layout
        opts = [adam(m.parameters()) for m in models]
        xs = [x[s].contiguous(memory_format=layout) for s in seeds]

        def step():
            losses = []
            for model, opt, xb, yb in zip(models, opts, xs, y):
                with autocast:
                    loss = loss_fn(model, model(xb), yb[None], l1=0.0)[1]
                opt.zero_grad()
                loss.sum().backward()
                opt.step()
                losses.append(loss)
            return torch.cat(losses)
    else:
        raise ValueError(f"unknown way {way!r}: one of {', '.join(WAYS)}")
    return step, step().detach().cpu()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="1,3,10", help="comma-separated stack sizes S")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10, help="steps timed per round")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:<k> | mps")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--out", default="bench-out/stack-step.json")
    args = ap.parse_args()

    import torch

    from benchmarks.common import write_report
    from cifar10_tricks.device import configure_torch

    device = torch.device(args.device)
    configure_torch(device, deterministic=True)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    report = {
        "device": args.device,
        "threads": torch.get_num_threads(),
        "precision": args.precision,
        "batch": 64,
        "by_seeds": {},
    }
    for n in (int(s) for s in args.seeds.split(",")):
        built = {way: build(way, n, device, precision=args.precision) for way in WAYS}
        first = torch.stack([loss for _, loss in built.values()])
        for _ in range(3):  # warm-up
            for step, _ in built.values():
                step()
        ms: dict[str, list[float]] = {way: [] for way in WAYS}
        for _ in range(args.rounds):
            for way, (step, _) in built.items():
                sync()
                start = time.perf_counter()
                for _ in range(args.steps):
                    step()
                sync()
                ms[way].append((time.perf_counter() - start) / args.steps * 1000)
        median = {way: statistics.median(v) for way, v in ms.items()}
        report["by_seeds"][n] = {
            "median_ms_per_step": median,
            "images_per_s_per_model": {way: 64 * 1000 / v for way, v in median.items()},
            "over_sequential": {way: median["sequential"] / v for way, v in median.items()},
            "first_loss_max_rel_diff": float(((first - first[-1]).abs() / first[-1].abs()).max()),
            "rounds_ms": ms,
        }
        print(
            json.dumps(
                {"seeds": n, **{k: v for k, v in report["by_seeds"][n].items() if k != "rounds_ms"}}
            ),
            flush=True,
        )
    write_report(args.out, report)


if __name__ == "__main__":
    main()
