"""The trainer: each knob does what it says, seeds make runs repeatable and independent when
trained together, divergence stops."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cifar10_tricks import cifar, params
from cifar10_tricks.device import configure_torch
from cifar10_tricks.errors import UserError
from cifar10_tricks.model import ModelConfig, Net
from cifar10_tricks.step import to_device
from stages.train import DivergedError, model_config, seed_stacks, train_seeds
from tests.conftest import CPU, STATS


def tp(**kw) -> params.TrainParams:
    return dataclasses.replace(
        params.TrainParams(epochs=2, seeds=(0,), device="cpu", precision="fp32"),
        **kw,
    )


def run(data, variant=None, seed=0, **kw):
    """One seed trained alone: (its one-seed model, its history)."""
    model, histories = run_stack(data, variant, (seed,), **kw)
    return model, histories[seed]


def run_stack(data, variant=None, seeds=(0,), **kw):
    """Seeds trained together: (the stacked model, each seed's history); batches of 32 unless
    ``batch_size`` says."""
    variant = dataclasses.replace(variant or params.Variant(), batch_size=kw.pop("batch_size", 32))
    cfg = model_config(variant, STATS, cifar.CLASSES)
    model, histories, _ = train_seeds("v", variant, cfg, data, seeds, tp(**kw), "fp32")
    return model, histories


def test_data_on_device_is_channels_last_uint8(data):
    assert data.x_train.dtype == torch.uint8 and data.x_train.shape[1:] == (3, 32, 32)
    assert data.x_train.is_contiguous(memory_format=torch.channels_last)


def test_lr_after_k_epochs_is_lr_times_gamma_to_the_k(data):
    v = params.Variant(lr=2e-3, lr_decay=0.8)
    _, history = run(data, v, epochs=4)
    for k, row in enumerate(history):
        assert row["lr"] == pytest.approx(2e-3 * 0.8**k)


def test_seed_in_a_stack_of_three_trains_as_it_does_alone(data):
    """No dropout: the first 20 steps of seed 1 trained beside seeds 0 and 2 are the 20 steps
    it takes alone (CPU, fp32), so stacking changes nothing but speed."""
    v = params.Variant(
        normalize=True, lr=2e-3, lr_decay=0.8, weight_decay=1e-4, l1=1e-5, init="kaiming_uniform"
    )
    n_steps = 20
    sub = dataclasses.replace(
        data, x_train=data.x_train[: n_steps * 8], y_train=data.y_train[: n_steps * 8]
    )
    alone, h_alone = run(sub, v, seed=1, epochs=1, batch_size=8)
    stack, h_stack = run_stack(sub, v, (0, 1, 2), epochs=1, batch_size=8)
    one = stack.single(1)
    # atol: a weight whose gradient is ~0 has Adam divide last-bit differences between the
    # grouped and the plain kernels by a tiny sqrt(v).  3e-5 is 1.5% of one Adam step (lr 2e-3);
    # an AVX-512 CPU's kernels reached 1.4e-5 (0.7%) on 1 weight of 65,536, an AVX2 one less.
    for name, p in alone.state_dict().items():
        torch.testing.assert_close(one.state_dict()[name], p, rtol=1e-4, atol=3e-5)
    assert h_stack[1][0]["train/loss"] == pytest.approx(h_alone[0]["train/loss"], rel=1e-4)
    assert h_stack[1][0]["test/acc"] == pytest.approx(
        h_alone[0]["test/acc"], abs=1 / len(data.y_test)
    )
    # ... and the stack really holds three different models.
    assert not torch.allclose(stack.single(0).fc2.weight, one.fc2.weight)


# The slide's knobs that reach the step's path: the activation the masks follow, the loss,
# SGD's update (capturable on CUDA).
SLIDE_KNOBS = [
    {},
    {"activation": "tanh"},
    {"activation": "sigmoid", "optimizer": "sgd", "momentum": 0.9, "lr": 0.01},
    {"loss": "mse", "optimizer": "sgd", "lr": 0.05},
]


@pytest.mark.parametrize(
    "knobs", SLIDE_KNOBS, ids=lambda k: "-".join(map(str, k.values())) or "blog"
)
def test_dropout_seed_in_a_stack_trains_as_alone_on_the_cpu(data, knobs):
    """On the CPU a seed's dropout masks come from its own streams, so even with dropout a
    stack changes nothing for a seed (off the CPU the hashed masks keep the same property),
    whatever the activation, loss and optimizer."""
    v = params.Variant(dropout_conv=0.2, dropout_dense=0.3, **knobs)
    alone, _ = run(data, v, seed=2, epochs=1)
    stack, _ = run_stack(data, v, (5, 2), epochs=1)
    for name, p in alone.state_dict().items():
        torch.testing.assert_close(stack.single(1).state_dict()[name], p, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "knobs", SLIDE_KNOBS, ids=lambda k: "-".join(map(str, k.values())) or "blog"
)
def test_dropout_seed_in_a_stack_trains_as_alone_on_the_gpus_path(data, monkeypatch, knobs):
    """On the path every device but the CPU takes (hashed masks, run here on the CPU), 20 steps
    of the dropout_both rung end where seed 1 ends alone: second in a stack of 3, or first in a
    stack of 2.  (The masks themselves are equal exactly: test_dropout.py.  The weights agree
    to the no-dropout test's tolerance; a ReLU whose input lies within rounding of zero can
    flip on the grouped kernels' last bits, which in other rungs grows to 1e-3 over 20 steps,
    on either mask source.)"""
    monkeypatch.setattr(Net, "cpu_masks", "hashed")
    v = params.Variant(**{**TUNED, **knobs}, dropout_conv=0.2, dropout_dense=0.2)
    sub = dataclasses.replace(data, x_train=data.x_train[:160], y_train=data.y_train[:160])
    alone, _ = run(sub, v, seed=1, epochs=1, batch_size=8)
    runs = [run_stack(sub, v, (0, 1, 2), epochs=1, batch_size=8)[0].single(1)]
    runs.append(run_stack(sub, v, (1, 4), epochs=1, batch_size=8)[0].single(0))
    # Judged against how far training moved the weights (1% of it), as gpu_check judges the GPU:
    # a rounding-level difference in a near-zero gradient moves a weight by up to lr per Adam
    # step, and through tanh's and sigmoid's curvature such gaps grow (8.8e-5 in one weight of
    # 864 here, 0.2% of the movement, past the no-dropout test's absolute 3e-5).
    init = Net(model_config(v, STATS, cifar.CLASSES), (1,)).state_dict()
    moved = max((p - init[name]).abs().max().item() for name, p in alone.state_dict().items())
    for one in runs:
        gap = max(
            (one.state_dict()[k] - p).abs().max().item() for k, p in alone.state_dict().items()
        )
        assert gap <= 0.01 * moved, (gap, moved)
    monkeypatch.setattr(Net, "cpu_masks", "streams")
    other, _ = run(sub, v, seed=1, epochs=1, batch_size=8)
    assert not torch.allclose(other.fc1.weight, alone.fc1.weight)  # the two paths really differ


def test_seed_stacks():
    assert seed_stacks(tuple(range(10)), 4) == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9)]
    assert seed_stacks((3, 1), 10) == [(3, 1)]


def test_off_the_cpu_dropout_is_hashed_and_counts_its_steps():
    """Off the CPU the model draws hashed masks (never the NumPy streams, which need host
    memory, nor F.dropout, whose masks depend on the stack and the GPU model); each training
    forward advances the step they are drawn for, an evaluation does not."""
    model = Net(ModelConfig(dropout_conv=0.2, dropout_dense=0.3), (0, 1)).to("meta")
    out = model(torch.zeros(4, 6, 32, 32, dtype=torch.uint8, device="meta"))
    assert out.shape == (2, 4, 10) and model.masks is None
    cpu = Net(ModelConfig(dropout_conv=0.2), (0,))
    cpu.cpu_masks = "hashed"
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    cpu(x)
    cpu(x)
    assert cpu.dropout_step.item() == 2 and cpu.masks is None
    cpu.eval()
    cpu(x)
    assert cpu.dropout_step.item() == 2
    assert "dropout_step" not in cpu.state_dict()  # not saved with a model


def test_grouped_training_gives_each_seed_the_same_model(data):
    """seeds_per_step only changes speed: seed 1 in a group of 2 equals seed 1 trained alone."""
    v = params.Variant(lr_decay=0.8)
    alone, _ = run(data, v, seed=1, epochs=1)
    stack, _ = run_stack(data, v, (0, 1), epochs=1)
    torch.testing.assert_close(
        stack.single(1).conv1.weight, alone.conv1.weight, rtol=1e-4, atol=1e-6
    )


def test_same_seed_same_model_other_seed_differs(data):
    a, ha = run(data, seed=0)
    b, hb = run(data, seed=0)
    c, hc = run(data, seed=1)
    assert [r["test/acc"] for r in ha] == [r["test/acc"] for r in hb]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.fc2.weight, c.fc2.weight)
    assert [r["train/loss"] for r in ha] != [r["train/loss"] for r in hc]


def test_each_variant_trains_a_fresh_model(data):
    """The notebook's dropout_conv kept training the previous variant's model.  Here a variant
    trained after another in the same process ends exactly where it ends when trained first:
    it started from fresh weights, not from the previous variant's trained ones."""
    conv = params.Variant(dropout_conv=0.2)

    def state(model):  # a copy: a reused model would be changed under us by the next run
        return {k: v.clone() for k, v in model.state_dict().items()}

    conv_first = state(run_stack(data, conv, (0, 1), epochs=1)[0])
    previous, _ = run_stack(data, params.Variant(lr=5e-3), (0, 1), epochs=2)
    before = state(previous)
    conv_after, _ = run_stack(data, conv, (0, 1), epochs=1)
    assert conv_after is not previous and all(
        torch.equal(before[k], v) for k, v in previous.state_dict().items()
    )
    assert all(torch.equal(conv_first[k], v) for k, v in conv_after.state_dict().items())
    # the check can tell them apart
    assert not torch.equal(conv_first["conv1.weight"], before["conv1.weight"])


def test_training_learns_the_synthetic_data(tmp_path):
    ds = cifar.parse_archive(
        cifar.write_synthetic_archive(tmp_path / "a.tar.gz", 3000, 500, seed=1)
    )
    _, history = run(to_device(ds, CPU), params.Variant(normalize=True), epochs=2, batch_size=64)
    assert history[-1]["test/acc"] > 0.4  # chance is 0.1
    assert history[-1]["test/acc"] < 0.999


def test_divergence_stops_with_variant_seed_epoch(data):
    v = params.Variant(lr=1e30)
    with pytest.raises(
        DivergedError, match=r"variant 'v', seed 0, epoch 1: the training loss became nan"
    ):
        run(data, v, epochs=2)
    with pytest.raises(DivergedError, match=r"variant 'v', seed 4, epoch 1"):
        run_stack(data, v, (4, 5), epochs=2)


def test_normalisation_uses_the_stats(data):
    cfg = model_config(
        params.Variant(normalize=True), {"mean": [0.1, 0.2, 0.3], "std": [1, 2, 3]}, cifar.CLASSES
    )
    assert cfg.normalize and cfg.mean == (0.1, 0.2, 0.3) and cfg.std == (1, 2, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graphs_train_like_eager_and_repeat_exactly(small_archive):
    """The graphed step is the eager step replayed: same learning, same result twice."""
    cuda = torch.device("cuda")
    configure_torch(cuda, deterministic=True)
    data = to_device(cifar.parse_archive(small_archive), cuda)
    v = params.Variant(
        lr=2e-3, lr_decay=0.8, weight_decay=1e-4, l1=1e-5, dropout_conv=0.2, normalize=True
    )
    cfg = model_config(v, STATS, cifar.CLASSES)
    seeds = (0, 1, 2)  # the stacked step, as the pipeline runs it on a GPU
    runs = {
        g: train_seeds(
            "v", v, cfg, data, seeds, tp(epochs=3, device="cuda"), "fp32", cuda_graphs=g
        )[:2]
        for g in (True, False)
    }
    again = train_seeds(
        "v", v, cfg, data, seeds, tp(epochs=3, device="cuda"), "fp32", cuda_graphs=True
    )[:2]
    graphed, eager = runs[True][1][1], runs[False][1][1]
    assert [r["test/acc"] for r in runs[True][1][0]] != [
        r["test/acc"] for r in graphed
    ]  # seeds differ
    assert [r["test/acc"] for r in runs[True][1][2]] == [r["test/acc"] for r in again[1][2]]
    assert [r["lr"] for r in graphed] == pytest.approx([2e-3, 1.6e-3, 1.28e-3])
    assert [r["test/acc"] for r in graphed] == [r["test/acc"] for r in again[1][1]]
    # The warm-up draws no masks and the step counter is restored, so the graph trains as the
    # eager step does: the same masks, the same numbers but for the kernels' rounding.
    assert graphed[-1]["train/loss"] == pytest.approx(eager[-1]["train/loss"], rel=1e-3)
    # A graph with stale lr, or restored-wrong parameters, would not move the loss like eager does.
    assert graphed[-1]["train/loss"] < graphed[0]["train/loss"]


def _train_stage(
    tmp_path,
    archive,
    variant: str,
    seeds: str,
    train: dict | None = None,
    knobs: dict | None = None,
):
    """Run the train stage's main() on ``archive`` for one epoch and the block ``seeds`` ("0-1"),
    with params.yaml's ``train`` section and ``variant``'s knobs updated by ``train`` and
    ``knobs``; returns the data set."""
    import json

    from stages import train as stage

    ds = cifar.parse_archive(archive)
    cifar.save(ds, tmp_path / "d.npz")
    (tmp_path / "stats.json").write_text(json.dumps(STATS))
    raw = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    raw["train"].update({"epochs": 1, **(train or {})})
    raw["variants"][variant].update(knobs or {})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    stage.main(
        [
            "--variant",
            variant,
            "--seeds",
            seeds,
            "--params",
            str(tmp_path / "params.yaml"),
            "--data",
            str(tmp_path / "d.npz"),
            "--stats",
            str(tmp_path / "stats.json"),
            "--models",
            str(tmp_path / "models"),
            "--live",
            str(tmp_path / "live"),
            "--predictions",
            str(tmp_path / "p.npz"),
        ]
    )
    return ds


def test_the_predictions_record_what_made_them(tmp_path, small_archive):
    """Data (source, the data file's md5, sizes), schedule, device and its name, precision,
    stack size and torch's version: what evaluate and compare carry into every result."""
    from cifar10_tricks import predictions, provenance

    _train_stage(tmp_path, small_archive, "baseline", "0-1", {"seeds_per_step": 2})
    made = predictions.read(tmp_path / "p.npz", "baseline")["made_by"]
    assert made["data"]["md5"] == provenance.file_md5(tmp_path / "d.npz")
    assert made["data"]["n_train"] == 250 and made["data"]["n_test"] == 60
    assert made["epochs"] == 1 and made["seeds"] == [0, 1] and made["seeds_per_step"] == 2
    assert made["device"] == "cpu" and made["device_name"] == provenance.cpu_name()
    assert made["precision"] in ("fp32", "bf16") and made["torch"] == torch.__version__


def test_a_stack_that_does_not_fit_names_seeds_per_step_as_the_way_out(
    tmp_path, small_archive, monkeypatch
):
    from stages import train as stage

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(stage, "train_seeds", out_of_memory)
    with pytest.raises(
        UserError,
        match=r"a stack of 4 seed\(s\) does not fit .*"
        r"`train.seeds_per_step: 2`",
    ):
        _train_stage(tmp_path, small_archive, "baseline", "0-3", {"seeds_per_step": 4})
    assert not (tmp_path / "models").exists() and not (tmp_path / "p.npz").exists()


def test_diverged_run_writes_no_model(tmp_path, small_archive):
    """A NaN loss stops the stage before anything is saved for that variant."""
    with pytest.raises(DivergedError, match="variant 'baseline', seed 0, epoch 1"):
        _train_stage(tmp_path, small_archive, "baseline", "0", {}, {"lr": 1.0e6})
    assert not (tmp_path / "models").exists() and not (tmp_path / "live").exists()
    assert not (tmp_path / "p.npz").exists()


def test_stage_writes_models_curves_and_the_predictions_evaluate_scores(
    tmp_path, small_archive, caplog
):
    """The saved predictions are the saved models' own fp32 predictions of the test set."""
    from cifar10_tricks import checkpoint
    from cifar10_tricks.model import predict

    caplog.set_level("INFO", logger="cifar10_tricks")
    ds = _train_stage(
        tmp_path,
        small_archive,
        "dropout_both",  # seeds in stacks (5, 6) and (7,)
        "5-7",
        {"seeds_per_step": 2},
    )
    with np.load(tmp_path / "p.npz", allow_pickle=False) as z:
        assert z["seeds"].tolist() == [5, 6, 7] and z["classes"].tolist() == list(ds.classes)
        assert np.array_equal(z["y_true"], ds.y_test)
        x = to_device(ds, CPU).x_test
        for s, seed in enumerate((5, 6, 7)):
            model, payload = checkpoint.load(tmp_path / "models" / f"seed_{seed}.pt")
            assert payload["seed"] == seed
            log_probs = predict(model.to(memory_format=torch.channels_last), x)[0]
            assert np.array_equal(z["pred"][s], log_probs.argmax(1).numpy())
            nll = -log_probs[torch.arange(len(ds.y_test)), torch.from_numpy(ds.y_test).long()]
            np.testing.assert_allclose(z["nll"][s], nll.numpy(), rtol=1e-5, atol=1e-6)
    assert (tmp_path / "live/plots/metrics/seed_7/test/acc.tsv").is_file()
    # It says the work ahead at its start (the estimate waits for a second epoch: 2 here).
    assert "train dropout_both seeds 5-7: 3 seed(s) x 1 epoch(s) x 250 images on cpu" in caplog.text
    assert "(2 stack(s))" in caplog.text
    assert "at the second's pace" not in caplog.text


def test_the_time_estimate_takes_the_second_epochs_pace_not_the_warm_up(
    tmp_path, small_archive, caplog
):
    """The first epoch pays the warm-up ('about 1.9 min' ended at 66 s): the stage waits for
    the second, and estimates what is left at its pace."""
    caplog.set_level("INFO", logger="cifar10_tricks")
    _train_stage(tmp_path, small_archive, "baseline", "0-2", {"epochs": 2, "seeds_per_step": 1})
    said = [r.getMessage() for r in caplog.records if "at the second's pace" in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert re.search(
        r"4 more epoch\(s\) at the second's pace \([\d.]+ s; the first warmed up, [\d.]+ s\): "
        r"about \d+ s",
        said[0],
    )
    # Every line a train stage prints fits 120 columns, at the slide's longest variant name.
    assert max(len(r.getMessage()) for r in caplog.records) <= 120 - len("full_default_init")


def test_seed_s_gives_every_variant_the_same_batches_and_initial_weights(data, monkeypatch):
    """Common random numbers, what the paired comparison rests on: seed s shuffles the data
    the same way in every variant, alone or in a stack, and starts from the same weights in
    every variant with the same init scheme (on the CPU; the shuffling is drawn on the CPU
    for every device)."""
    from stages import train as stage

    batches, initial = {}, {}
    real_fresh_stack, real_step = stage.fresh_stack, stage.train_step

    def spy(config, seeds, variant, data, precision, cuda_graphs=True):
        t = real_fresh_stack(config, seeds, variant, data, precision, cuda_graphs)
        initial[(variant, seeds)] = {k: p.detach().clone() for k, p in t.model.named_parameters()}
        return t

    def recorded(stack, idx, regularize=True):  # the loop calls train_step by name
        batches.setdefault((stack.variant, stack.model.seeds), []).append(idx.clone())
        real_step(stack, idx, regularize)

    monkeypatch.setattr(stage, "fresh_stack", spy)
    monkeypatch.setattr(stage, "train_step", recorded)
    plain = params.Variant(batch_size=32)
    tuned = params.Variant(
        normalize=True,
        lr=2e-3,
        lr_decay=0.8,
        weight_decay=1e-4,
        l1=1e-5,
        dropout_conv=0.2,
        regularize_from=1,
        loss="mse",
        activation="tanh",
        batch_size=32,
    )
    kaiming = params.Variant(init="kaiming_uniform", optimizer="sgd", momentum=0.9, batch_size=32)
    small = dataclasses.replace(data, x_train=data.x_train[:64], y_train=data.y_train[:64])
    for variant in (plain, tuned, kaiming):
        run(small, variant, seed=1, epochs=2)
        run_stack(small, variant, (0, 1), epochs=2)

    def seed1(variant, seeds, what):
        if what == "batches":
            rows = [idx[seeds.index(1)] for idx in batches[(variant, seeds)]]
            return torch.cat(rows)
        return {
            k: p.chunk(len(seeds))[seeds.index(1)] for k, p in initial[(variant, seeds)].items()
        }

    order = seed1(plain, (1,), "batches")
    assert len(order) == 2 * 64 and sorted(order[:64].tolist()) == list(range(64))  # a permutation
    for variant in (plain, tuned, kaiming):
        for seeds in ((1,), (0, 1)):
            assert torch.equal(seed1(variant, seeds, "batches"), order)
    for seeds in ((1,), (0, 1)):
        same = seed1(plain, seeds, "init"), seed1(tuned, seeds, "init")
        assert all(torch.equal(same[0][k], same[1][k]) for k in same[0])
        other = seed1(kaiming, seeds, "init")
        assert not torch.equal(other["conv1.weight"], same[0]["conv1.weight"])
    assert not torch.equal(
        seed1(plain, (0, 1), "init")["conv1.weight"],
        initial[(plain, (0, 1))]["conv1.weight"].chunk(2)[0],
    )


TUNED = dict(
    normalize=True, lr=2e-3, lr_decay=0.8, weight_decay=1e-4, l1=1e-5, init="kaiming_uniform"
)


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_a_stack_trains_alike_in_either_memory_layout(data, monkeypatch, dropout):
    """On CUDA a stack of seeds runs in contiguous NCHW, a single model in channels_last
    (cifar10_tricks.device.memory_format).  On the CPU, dropout masks included: one step's loss and
    gradients agree to fp32 round-off, and 20 steps end with the same losses and accuracy as
    the stacked-vs-alone test asks.  (Weights are not compared: Adam divides the layouts'
    last-bit differences by sqrt(v) of near-zero gradients, amplifying them to ~10% of a step.)"""
    from cifar10_tricks import step

    variant = params.Variant(**TUNED, dropout_conv=dropout)  # the stacked-vs-alone test's rung
    small = dataclasses.replace(data, x_train=data.x_train[:160], y_train=data.y_train[:160])
    cfg = model_config(variant, STATS, cifar.CLASSES)
    first, histories = {}, {}
    for layout in (torch.channels_last, torch.contiguous_format):
        monkeypatch.setattr(step, "memory_format", lambda device, n, layout=layout: layout)
        t = step.fresh_stack(cfg, (0, 1, 2), variant, small, "fp32")
        assert t.model.conv2.weight.is_contiguous(memory_format=layout)
        t.step(torch.arange(24).view(3, 8))
        first[layout] = (t.sums.clone(), [p.grad.clone() for p in t.model.parameters()])
        _, histories[layout] = run_stack(small, variant, (0, 1, 2), epochs=1, batch_size=8)
    (sums_a, grads_a), (sums_b, grads_b) = first.values()
    torch.testing.assert_close(sums_a, sums_b, rtol=1e-5, atol=0)
    for g, h in zip(grads_a, grads_b):
        torch.testing.assert_close(g, h, rtol=1e-4, atol=1e-5 * g.abs().max().item())
    cl, nchw = histories[torch.channels_last], histories[torch.contiguous_format]
    for seed in (0, 1, 2):
        assert nchw[seed][0]["train/loss"] == pytest.approx(cl[seed][0]["train/loss"], rel=1e-4)
        assert nchw[seed][0]["test/acc"] == pytest.approx(cl[seed][0]["test/acc"], abs=1 / 60)


def test_memory_format_is_nchw_only_for_a_stack_on_cuda():
    from cifar10_tricks import device

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert device.memory_format(cpu, 10) == torch.channels_last
    assert device.memory_format(cuda, 1) == torch.channels_last
    assert device.memory_format(cuda, 10) == torch.contiguous_format


def test_progress_counts_every_batch_of_every_epoch(data):
    class Counter:
        n = 0

        def update(self, k):
            self.n += k

    counter = Counter()
    variant = params.Variant(batch_size=32)
    cfg = model_config(variant, STATS, cifar.CLASSES)
    train_seeds("v", variant, cfg, data, (0, 1), tp(epochs=2), "fp32", progress=counter)
    assert counter.n == 2 * -(-len(data.x_train) // 32)


@pytest.mark.parametrize("given", ["0..9", "9-0", "-1", "0-2000", ""])
def test_a_seeds_argument_that_is_no_block_is_one_clear_error(given):
    from stages.train import block_of

    with pytest.raises(UserError, match=r"--seeds .* give one block of train.seeds"):
        block_of(given)
    assert block_of("3-5") == (3, 4, 5) and block_of("7") == (7,)


def test_a_last_step_that_diverges_writes_nothing(tmp_path, small_archive):
    """One Adam step per epoch at a huge lr: the epoch's loss (taken during the step) is finite,
    the weights after it are not.  The stage stops naming variant, seed, epoch and lr, and
    writes no model, predictions or curves (they would have NaN losses in them)."""
    with pytest.raises(
        DivergedError,
        match=r"variant 'baseline', seed 0, epoch 1: the trained weights .* not finite .*"
        r"variants.baseline.lr \(now 1000000.0\)",
    ):
        _train_stage(tmp_path, small_archive, "baseline", "0", {}, {"lr": 1e6, "batch_size": 250})
    assert not (tmp_path / "models").exists() and not (tmp_path / "live").exists()
    assert not (tmp_path / "p.npz").exists()


KNOB_FLIPS = {
    "activation": ["tanh", "sigmoid"],
    "loss": ["mse"],
    "optimizer": ["sgd"],
    "momentum": [0.9],  # with optimizer sgd, below
    "batch_size": [16],
    "shuffle": ["once", "sorted"],
    "regularize_from": [1],  # with weight_decay and l1 on, below
}


@pytest.mark.parametrize(
    "knob, value", [(k, v) for k, values in KNOB_FLIPS.items() for v in values]
)
def test_every_slide_knob_changes_the_trained_weights(data, knob, value):
    """A knob that changes nothing is a bug: flipped on a short run (2 epochs, 2 seeds), each of
    the slide's knobs ends with other weights than the same run without it."""
    base = params.Variant(
        weight_decay=1e-2, l1=1e-4, dropout_conv=0.2, lr=0.01 if knob == "momentum" else 1e-3
    )
    if knob == "momentum":
        base = dataclasses.replace(base, optimizer="sgd")
    small = dataclasses.replace(data, x_train=data.x_train[:96], y_train=data.y_train[:96])
    flipped = dataclasses.replace(base, **{knob: value})
    batch = {"batch_size": value} if knob == "batch_size" else {}  # run_stack sets the batch
    a, _ = run_stack(small, base, (0, 1), epochs=2)
    b, _ = run_stack(small, flipped, (0, 1), epochs=2, **batch)
    assert not torch.equal(a.conv1.weight, b.conv1.weight), knob
    # ... and the blog's defaults are the same run as the Variant() defaults, bit for bit.
    c, _ = run_stack(small, base, (0, 1), epochs=2)
    assert torch.equal(a.conv1.weight, c.conv1.weight)


def test_regularisation_waits_for_its_epoch(data):
    """regularize_from 1: the first epoch trains exactly as with no L2 and no L1 at all; the
    second does not."""
    small = dataclasses.replace(data, x_train=data.x_train[:64], y_train=data.y_train[:64])
    late = params.Variant(weight_decay=0.05, l1=1e-3, regularize_from=1)
    none = params.Variant()
    one_late, _ = run_stack(small, late, (0,), epochs=1)
    one_none, _ = run_stack(small, none, (0,), epochs=1)
    assert torch.equal(one_late.conv1.weight, one_none.conv1.weight)
    two_late, _ = run_stack(small, late, (0,), epochs=2)
    two_none, _ = run_stack(small, none, (0,), epochs=2)
    assert not torch.equal(two_late.conv1.weight, two_none.conv1.weight)


def test_shuffle_once_repeats_the_first_order_and_sorted_goes_by_class(data):
    from cifar10_tricks.step import Orders

    once = Orders("once", (0, 1), data.y_train)
    first, second = once.epoch(), once.epoch()
    assert torch.equal(first, second) and not torch.equal(first[0], first[1])
    every = Orders("every_epoch", (0, 1), data.y_train)
    assert torch.equal(every.epoch(), first)  # the same first epoch as once
    assert not torch.equal(every.epoch(), first)
    by_class = Orders("sorted", (0, 1), data.y_train).epoch()
    labels = data.y_train[by_class[0]]
    assert torch.equal(labels, labels.sort().values) and torch.equal(by_class[0], by_class[1])
