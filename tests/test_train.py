"""The trainer: each knob does what it says, seeds make runs repeatable, divergence stops."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from stages import cifar, params
from stages.model import Net
from stages.runtime import configure_torch
from stages.train import (
    DivergedError,
    loss_fn,
    make_optimizer,
    mean_history,
    model_config,
    to_device,
    train_seed,
)

CPU = torch.device("cpu")
STATS = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


@pytest.fixture(scope="module")
def data(small_archive):
    return to_device(cifar.parse_archive(small_archive), CPU)


def tp(**kw) -> params.TrainParams:
    return dataclasses.replace(params.TrainParams(epochs=2, batch_size=32, seeds=(0,), device="cpu",
                                                  precision="fp32"), **kw)


def run(data, variant=None, seed=0, **kw):
    variant = variant or params.Variant()
    cfg = model_config(variant, STATS, cifar.CLASSES)
    return train_seed("v", variant, cfg, data, seed, tp(**kw), CPU, "fp32")


def test_data_on_device_is_channels_last_uint8(data):
    assert data.x_train.dtype == torch.uint8 and data.x_train.shape[1:] == (3, 32, 32)
    assert data.x_train.is_contiguous(memory_format=torch.channels_last)


def test_weight_decay_goes_to_the_optimizer():
    v = params.Variant(weight_decay=1e-4, lr=2e-3)
    opt, _ = make_optimizer(Net(model_config(v, STATS, cifar.CLASSES)), v, CPU)
    assert isinstance(opt, torch.optim.Adam)
    assert opt.param_groups[0]["weight_decay"] == 1e-4 and opt.param_groups[0]["lr"] == 2e-3


def test_lr_after_k_epochs_is_lr_times_gamma_to_the_k(data):
    v = params.Variant(lr=2e-3, lr_decay=0.8)
    _, history = run(data, v, epochs=4)
    for k, row in enumerate(history):
        assert row["lr"] == pytest.approx(2e-3 * 0.8**k)


def test_l1_term_is_in_the_loss():
    model = Net(model_config(params.Variant(), STATS, cifar.CLASSES))
    log_probs = torch.log_softmax(torch.randn(4, 10), 1)
    y = torch.tensor([0, 1, 2, 3])
    loss, nll = loss_fn(model, log_probs, y, l1=0.01)
    l1 = sum(w.abs().sum() for w in model.weights())
    torch.testing.assert_close(loss, nll + 0.01 * l1)
    plain, _ = loss_fn(model, log_probs, y, l1=0.0)
    torch.testing.assert_close(plain, nll)


def test_same_seed_same_model_other_seed_differs(data):
    a, ha = run(data, seed=0)
    b, hb = run(data, seed=0)
    c, hc = run(data, seed=1)
    assert [r["test/acc"] for r in ha] == [r["test/acc"] for r in hb]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.fc2.weight, c.fc2.weight)
    assert [r["train/loss"] for r in ha] != [r["train/loss"] for r in hc]


def test_each_variant_trains_a_fresh_model(data):
    """The notebook's dropout_conv kept training the previous model; here each call starts anew."""
    first, _ = run(data, epochs=1)
    second, _ = run(data, epochs=1)
    assert torch.equal(first.conv1.weight, second.conv1.weight)


def test_training_learns_the_synthetic_data(tmp_path):
    ds = cifar.parse_archive(cifar.write_synthetic_archive(tmp_path / "a.tar.gz", 3000, 500, seed=1))
    _, history = run(to_device(ds, CPU), params.Variant(normalize=True), epochs=2, batch_size=64)
    assert history[-1]["test/acc"] > 0.4  # chance is 0.1
    assert history[-1]["test/acc"] < 0.999


def test_divergence_stops_with_variant_seed_epoch(data):
    v = params.Variant(lr=1e30)
    with pytest.raises(DivergedError, match=r"variant 'v', seed 0, epoch 1: the training loss became nan"):
        run(data, v, epochs=2)


def test_normalisation_uses_the_stats(data):
    cfg = model_config(params.Variant(normalize=True), {"mean": [0.1, 0.2, 0.3], "std": [1, 2, 3]}, cifar.CLASSES)
    assert cfg.normalize and cfg.mean == (0.1, 0.2, 0.3) and cfg.std == (1, 2, 3)


def test_mean_history_averages_over_seeds():
    h = [[{"train/loss": 1.0, "train/acc": 0.5, "test/loss": 2.0, "test/acc": 0.4}],
         [{"train/loss": 3.0, "train/acc": 0.7, "test/loss": 4.0, "test/acc": 0.6}]]
    assert mean_history(h) == [{"train/loss": 2.0, "train/acc": 0.6, "test/loss": 3.0, "test/acc": 0.5}]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graphs_train_like_eager_and_repeat_exactly(small_archive):
    """The graphed step is the eager step replayed: same learning, same result twice."""
    cuda = torch.device("cuda")
    configure_torch(cuda, deterministic=True)
    data = to_device(cifar.parse_archive(small_archive), cuda)
    v = params.Variant(lr=2e-3, lr_decay=0.8, weight_decay=1e-4, l1=1e-5, dropout_conv=0.2, normalize=True)
    cfg = model_config(v, STATS, cifar.CLASSES)
    runs = {g: train_seed("v", v, cfg, data, 0, tp(epochs=3, device="cuda"), cuda, "fp32", cuda_graphs=g)
            for g in (True, False)}
    again = train_seed("v", v, cfg, data, 0, tp(epochs=3, device="cuda"), cuda, "fp32", cuda_graphs=True)
    graphed, eager = runs[True][1], runs[False][1]
    assert [r["lr"] for r in graphed] == pytest.approx([2e-3, 1.6e-3, 1.28e-3])
    assert [r["test/acc"] for r in graphed] == [r["test/acc"] for r in again[1]]
    assert graphed[-1]["train/loss"] == pytest.approx(eager[-1]["train/loss"], rel=0.15)
    # A graph with stale lr, or restored-wrong parameters, would not move the loss like eager does.
    assert graphed[-1]["train/loss"] < graphed[0]["train/loss"]


def test_diverged_run_writes_no_model(tmp_path, small_archive):
    """A NaN loss stops the stage before anything is saved for that variant."""
    from stages import train

    ds = cifar.parse_archive(small_archive)
    cifar.save(ds, tmp_path / "d.npz")
    (tmp_path / "stats.json").write_text('{"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}')
    raw = (params.Path(__file__).parents[1] / "params.yaml").read_text()
    raw = raw.replace("epochs: 10", "epochs: 2").replace("seeds: [0, 1, 2]", "seeds: [0]")
    raw = raw.replace("{normalize: false, lr: 0.001,", "{normalize: false, lr: 1.0e+30,", 1)
    (tmp_path / "params.yaml").write_text(raw)
    with pytest.raises(DivergedError, match="variant 'baseline', seed 0, epoch 1"):
        train.main(["--variant", "baseline", "--params", str(tmp_path / "params.yaml"), "--data",
                    str(tmp_path / "d.npz"), "--stats", str(tmp_path / "stats.json"),
                    "--models", str(tmp_path / "models"), "--live", str(tmp_path / "live")])
    assert not (tmp_path / "models").exists() and not (tmp_path / "live").exists()


def test_graph_capture_restores_params_adam_state_and_sums(data):
    """What GraphedStep saves around its warm-up steps comes back exactly (checked on CPU)."""
    from stages.train import GraphedStep, make_step

    v = params.Variant()
    model = Net(model_config(v, STATS, cifar.CLASSES))
    opt, _ = make_optimizer(model, v, CPU)
    sums = torch.zeros(2, dtype=torch.float64)
    step = make_step(model, opt, v, data, "fp32", sums)
    graphed = GraphedStep(step, model, opt, sums)

    fresh = graphed._snapshot()  # before any step: no Adam state yet
    step(torch.arange(32))
    graphed._restore(fresh)
    torch.testing.assert_close(list(model.parameters()), fresh[0])
    assert all(v.abs().sum() == 0 for st in opt.state.values() for v in st.values())
    assert sums.abs().sum() == 0

    step(torch.arange(32))  # mid-training: Adam's moments must survive a second capture
    mid = graphed._snapshot()
    step(torch.arange(32, 64))
    graphed._restore(mid)
    torch.testing.assert_close(list(model.parameters()), mid[0])
    for p, st in opt.state.items():
        for k, v in st.items():
            torch.testing.assert_close(v, mid[1][p][k])
    torch.testing.assert_close(sums, mid[2])
