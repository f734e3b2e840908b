"""The trainer: each knob does what it says, seeds make runs repeatable and independent when
trained together, divergence stops."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from stages import cifar, params
from stages.model import ModelConfig, Net
from stages.runtime import configure_torch
from stages.train import (
    DivergedError,
    loss_fn,
    make_optimizer,
    mean_history,
    model_config,
    seed_groups,
    seeds_per_step,
    to_device,
    train_seeds,
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
    """One seed trained alone: (its one-seed model, its history)."""
    model, histories = run_stack(data, variant, (seed,), **kw)
    return model, histories[seed]


def run_stack(data, variant=None, seeds=(0,), **kw):
    """Seeds trained together: (the stacked model, each seed's history)."""
    variant = variant or params.Variant()
    cfg = model_config(variant, STATS, cifar.CLASSES)
    model, histories, _ = train_seeds("v", variant, cfg, data, seeds, tp(**kw), CPU, "fp32")
    return model, histories


def test_data_on_device_is_channels_last_uint8(data):
    assert data.x_train.dtype == torch.uint8 and data.x_train.shape[1:] == (3, 32, 32)
    assert data.x_train.is_contiguous(memory_format=torch.channels_last)


def test_optimizer_is_torchs_adam_with_exponential_lr_bit_for_bit():
    """Ten steps over three epochs: the same weights, moments and lr as torch.optim.Adam
    (foreach, L2 weight decay) driven by ExponentialLR."""
    v = params.Variant(weight_decay=1e-4, lr=2e-3, lr_decay=0.8)
    ours_model = Net(model_config(v, STATS, cifar.CLASSES), (0, 1))
    ref_model = Net(model_config(v, STATS, cifar.CLASSES), (0, 1))
    ours = make_optimizer(ours_model, v, CPU)
    ref = torch.optim.Adam(ref_model.parameters(), lr=2e-3, weight_decay=1e-4, foreach=True)
    sched = torch.optim.lr_scheduler.ExponentialLR(ref, gamma=0.8)
    x = torch.randint(0, 256, (8, 6, 32, 32), dtype=torch.uint8)
    for step in range(10):
        for model, opt in ((ours_model, ours), (ref_model, ref)):
            opt.zero_grad()
            (model(x)[:, :, step % 10].sum() + 0.01 * sum(w.abs().sum() for w in model.weights())).backward()
            opt.step()
        if step % 4 == 3:
            ours.decay()
            sched.step()
    for p, q in zip(ours_model.parameters(), ref_model.parameters()):
        assert torch.equal(p, q)
        assert torch.equal(ours.state[p]["exp_avg_sq"], ref.state[q]["exp_avg_sq"])
        assert ours.state[p]["step"].item() == ref.state[q]["step"].item() == 10
    assert ours.lr == sched.get_last_lr()[0] == pytest.approx(2e-3 * 0.8**2)


def test_a_training_step_does_not_import_torch_dynamo():
    """torch.optim's classes import torch._dynamo (1.5-4.6 s per train stage); ours must not."""
    import subprocess
    import sys

    code = ("import sys, torch; from stages import params; from stages.model import Net, ModelConfig; "
            "from stages.train import make_optimizer; m = Net(ModelConfig()); "
            "opt = make_optimizer(m, params.Variant(weight_decay=1e-4), torch.device('cpu')); "
            "m(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).sum().backward(); opt.step(); opt.zero_grad(); "
            "opt.decay(); print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=params.Path(__file__).parents[1])
    assert out.stdout.split() == ["False"]


def test_lr_after_k_epochs_is_lr_times_gamma_to_the_k(data):
    v = params.Variant(lr=2e-3, lr_decay=0.8)
    _, history = run(data, v, epochs=4)
    for k, row in enumerate(history):
        assert row["lr"] == pytest.approx(2e-3 * 0.8**k)


def test_l1_term_is_in_the_loss():
    model = Net(model_config(params.Variant(), STATS, cifar.CLASSES))
    log_probs = torch.log_softmax(torch.randn(1, 4, 10), -1)
    y = torch.tensor([[0, 1, 2, 3]])
    loss, nll = loss_fn(model, log_probs, y, l1=0.01)
    l1 = sum(w.abs().sum() for w in model.weights())
    torch.testing.assert_close(loss, nll.sum() + 0.01 * l1)
    plain, _ = loss_fn(model, log_probs, y, l1=0.0)
    torch.testing.assert_close(plain, nll.sum())
    torch.testing.assert_close(nll, torch.nn.functional.nll_loss(log_probs[0], y[0]).view(1))


def test_loss_sums_the_seeds_so_each_gradient_is_its_own():
    """d(loss)/d(seed s's weights) is seed s's own gradient: other seeds' losses do not reach it."""
    v = params.Variant(l1=1e-3)
    stack = Net(model_config(v, STATS, cifar.CLASSES), (0, 1, 2))
    x = torch.randint(0, 256, (3, 8, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (3, 8))
    from stages.model import stack_images

    loss, nll = loss_fn(stack, stack(stack_images(x)), y, v.l1)
    loss.backward()
    alone = stack.single(1)
    one_loss, _ = loss_fn(alone, alone(stack_images(x[1:2])), y[1:2], v.l1)
    one_loss.backward()
    for name, p in stack.named_parameters():
        torch.testing.assert_close(p.grad.chunk(3)[1], dict(alone.named_parameters())[name].grad,
                                   rtol=1e-4, atol=1e-6)


def test_seed_in_a_stack_of_three_trains_as_it_does_alone(data):
    """No dropout: the first 20 steps of seed 1 trained beside seeds 0 and 2 are the 20 steps
    it takes alone (CPU, fp32), so stacking changes nothing but speed."""
    v = params.Variant(normalize=True, lr=2e-3, lr_decay=0.8, weight_decay=1e-4, l1=1e-5,
                       init="kaiming_uniform")
    n_steps = 20
    sub = dataclasses.replace(data, x_train=data.x_train[: n_steps * 8], y_train=data.y_train[: n_steps * 8])
    alone, h_alone = run(sub, v, seed=1, epochs=1, batch_size=8)
    stack, h_stack = run_stack(sub, v, (0, 1, 2), epochs=1, batch_size=8)
    one = stack.single(1)
    # atol: a weight whose gradient is ~0 has Adam divide last-bit differences between the
    # grouped and the plain convolution kernels by a tiny sqrt(v); 1e-5 is 0.5% of one step.
    for name, p in alone.state_dict().items():
        torch.testing.assert_close(one.state_dict()[name], p, rtol=1e-4, atol=1e-5)
    assert h_stack[1][0]["train/loss"] == pytest.approx(h_alone[0]["train/loss"], rel=1e-4)
    assert h_stack[1][0]["test/acc"] == pytest.approx(h_alone[0]["test/acc"], abs=1 / len(data.y_test))
    # ... and the stack really holds three different models.
    assert not torch.allclose(stack.single(0).fc2.weight, one.fc2.weight)


def test_dropout_seed_in_a_stack_trains_as_alone_on_the_cpu(data):
    """On the CPU a seed's dropout masks come from its own streams, so even with dropout a
    stack changes nothing for a seed (on CUDA the masks are torch's and differ)."""
    v = params.Variant(dropout_conv=0.2, dropout_dense=0.3)
    alone, _ = run(data, v, seed=2, epochs=1)
    stack, _ = run_stack(data, v, (5, 2), epochs=1)
    for name, p in alone.state_dict().items():
        torch.testing.assert_close(stack.single(1).state_dict()[name], p, rtol=1e-4, atol=1e-5)


def test_torchs_global_generator_is_seeded_for_gpu_dropout(data):
    """On a GPU, dropout draws from torch's global generator: training seeds it (from the
    stack's first seed), so GPU runs repeat too."""
    torch.manual_seed(12345)
    run_stack(data, params.Variant(), (7, 3), epochs=1)
    assert torch.initial_seed() == 7


def test_seed_groups_and_seeds_per_step():
    assert seed_groups(tuple(range(10)), 4) == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9)]
    assert seed_groups((3, 1), 10) == [(3, 1)]
    assert seeds_per_step("auto", 10, CPU, "fp32") == 1  # stacking does not pay on a CPU
    assert seeds_per_step(4, 10, CPU, "fp32") == 4
    assert seeds_per_step(32, 10, CPU, "fp32") == 10


def test_seeds_per_step_auto_on_a_gpu_fills_half_its_free_memory(monkeypatch):
    """On a GPU ``auto`` stacks as many seeds as half the free memory holds (128 MB a seed
    in fp32, half that in bf16), never fewer than one nor more than there are."""
    gib = 2**30
    cuda, mps = torch.device("cuda"), torch.device("mps")
    for free, precision, expected in [(4 * gib, "fp32", 10), (1 * gib, "fp32", 4), (1 * gib, "bf16", 8),
                                      (100 * 2**20, "fp32", 1)]:
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device, free=free: (free, 80 * gib))
        assert seeds_per_step("auto", 10, cuda, precision) == expected
    monkeypatch.setattr(torch.mps, "recommended_max_memory", lambda: 3 * gib)
    monkeypatch.setattr(torch.mps, "driver_allocated_memory", lambda: 2 * gib)
    assert seeds_per_step("auto", 10, mps, "fp32") == 4
    assert seeds_per_step(2, 10, cuda, "fp32") == 2  # a number is a cap, whatever the memory


def test_off_the_cpu_dropout_is_torchs(monkeypatch):
    """Off the CPU the model draws its masks with F.dropout (on the GPU's generator), never
    the NumPy streams, which need host memory."""
    calls = []
    monkeypatch.setattr(F, "dropout", lambda x, p, training: calls.append(p) or x)
    model = Net(ModelConfig(dropout_conv=0.2, dropout_dense=0.3), (0, 1)).to("meta")
    out = model(torch.zeros(4, 6, 32, 32, dtype=torch.uint8, device="meta"))
    assert out.shape == (2, 4, 10) and calls == [0.2, 0.2, 0.2, 0.3] and model.masks is None


def test_grouped_training_gives_each_seed_the_same_model(data):
    """seeds_per_step only changes speed: seed 1 of a run in groups of 2 equals seed 1 trained alone."""
    v = params.Variant(lr_decay=0.8)
    alone, _ = run(data, v, seed=1, epochs=1)
    stack, _ = run_stack(data, v, (0, 1), epochs=1)
    torch.testing.assert_close(stack.single(1).conv1.weight, alone.conv1.weight, rtol=1e-4, atol=1e-6)


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
    stack_a, _ = run_stack(data, params.Variant(dropout_conv=0.2), (0, 1), epochs=1)
    stack_b, _ = run_stack(data, params.Variant(dropout_conv=0.2), (0, 1), epochs=1)
    assert all(torch.equal(x, y) for x, y in zip(stack_a.state_dict().values(), stack_b.state_dict().values()))


def test_training_learns_the_synthetic_data(tmp_path):
    ds = cifar.parse_archive(cifar.write_synthetic_archive(tmp_path / "a.tar.gz", 3000, 500, seed=1))
    _, history = run(to_device(ds, CPU), params.Variant(normalize=True), epochs=2, batch_size=64)
    assert history[-1]["test/acc"] > 0.4  # chance is 0.1
    assert history[-1]["test/acc"] < 0.999


def test_divergence_stops_with_variant_seed_epoch(data):
    v = params.Variant(lr=1e30)
    with pytest.raises(DivergedError, match=r"variant 'v', seed 0, epoch 1: the training loss became nan"):
        run(data, v, epochs=2)
    with pytest.raises(DivergedError, match=r"variant 'v', seed 4, epoch 1"):
        run_stack(data, v, (4, 5), epochs=2)


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
    seeds = (0, 1, 2)  # the stacked step, as the pipeline runs it on a GPU
    runs = {g: train_seeds("v", v, cfg, data, seeds, tp(epochs=3, device="cuda"), cuda, "fp32", cuda_graphs=g)[:2]
            for g in (True, False)}
    again = train_seeds("v", v, cfg, data, seeds, tp(epochs=3, device="cuda"), cuda, "fp32", cuda_graphs=True)[:2]
    graphed, eager = runs[True][1][1], runs[False][1][1]
    assert [r["test/acc"] for r in runs[True][1][0]] != [r["test/acc"] for r in graphed]  # seeds differ
    assert [r["test/acc"] for r in runs[True][1][2]] == [r["test/acc"] for r in again[1][2]]
    assert [r["lr"] for r in graphed] == pytest.approx([2e-3, 1.6e-3, 1.28e-3])
    assert [r["test/acc"] for r in graphed] == [r["test/acc"] for r in again[1][1]]
    assert graphed[-1]["train/loss"] == pytest.approx(eager[-1]["train/loss"], rel=0.15)
    # A graph with stale lr, or restored-wrong parameters, would not move the loss like eager does.
    assert graphed[-1]["train/loss"] < graphed[0]["train/loss"]


def _train_stage(tmp_path, archive, variant: str, edits: dict[str, str]):
    """Run the train stage's main() on ``archive``, with params.yaml edited by ``edits``
    (text replacements, first occurrence); returns the data set."""
    import json

    from stages import train

    ds = cifar.parse_archive(archive)
    cifar.save(ds, tmp_path / "d.npz")
    (tmp_path / "stats.json").write_text(json.dumps(STATS))
    raw = (params.Path(__file__).parents[1] / "params.yaml").read_text()
    for old, new in {"epochs: 10": "epochs: 1", **edits}.items():
        raw = raw.replace(old, new, 1)
    (tmp_path / "params.yaml").write_text(raw)
    train.main(["--variant", variant, "--params", str(tmp_path / "params.yaml"), "--data", str(tmp_path / "d.npz"),
                "--stats", str(tmp_path / "stats.json"), "--models", str(tmp_path / "models"),
                "--live", str(tmp_path / "live"), "--predictions", str(tmp_path / "p.npz")])
    return ds


SEEDS = "seeds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"


def test_diverged_run_writes_no_model(tmp_path, small_archive):
    """A NaN loss stops the stage before anything is saved for that variant."""
    with pytest.raises(DivergedError, match="variant 'baseline', seed 0, epoch 1"):
        _train_stage(tmp_path, small_archive, "baseline", {
            SEEDS: "seeds: [0]", "{normalize: false, lr: 0.001,": "{normalize: false, lr: 1.0e+30,"})
    assert not (tmp_path / "models").exists() and not (tmp_path / "live").exists()
    assert not (tmp_path / "p.npz").exists()


def test_stage_writes_models_curves_and_the_predictions_evaluate_scores(tmp_path, small_archive):
    """The saved predictions are the saved models' own fp32 predictions of the test set."""
    from stages.model import load_checkpoint, predict

    ds = _train_stage(tmp_path, small_archive, "dropout_both",  # seeds in stacks (4, 2) and (7,)
                      {SEEDS: "seeds: [4, 2, 7]", "seeds_per_step: auto": "seeds_per_step: 2"})
    with np.load(tmp_path / "p.npz", allow_pickle=False) as z:
        assert z["seeds"].tolist() == [4, 2, 7] and z["classes"].tolist() == list(ds.classes)
        assert np.array_equal(z["y_true"], ds.y_test)
        x = to_device(ds, CPU).x_test
        for s, seed in enumerate((4, 2, 7)):
            model, payload = load_checkpoint(tmp_path / "models" / f"seed_{seed}.pt")
            assert payload["seed"] == seed
            log_probs = predict(model.to(memory_format=torch.channels_last), x)[0]
            assert np.array_equal(z["pred"][s], log_probs.argmax(1).numpy())
            nll = -log_probs[torch.arange(len(ds.y_test)), torch.from_numpy(ds.y_test).long()]
            np.testing.assert_allclose(z["nll"][s], nll.numpy(), rtol=1e-5, atol=1e-6)
    assert (tmp_path / "live/plots/metrics/seed_7/test/acc.tsv").is_file()


def test_graph_capture_restores_params_adam_state_and_sums(data):
    """What GraphedStep saves around its warm-up steps comes back exactly (checked on CPU)."""
    from stages.train import GraphedStep, make_step

    v = params.Variant()
    model = Net(model_config(v, STATS, cifar.CLASSES))
    opt = make_optimizer(model, v, CPU)
    sums = torch.zeros(1, 2, dtype=torch.float64)
    step = make_step(model, opt, v, data, "fp32", sums)
    graphed = GraphedStep(step, model, opt, sums)

    fresh = graphed._snapshot()  # before any step: no Adam state yet
    step(torch.arange(32).view(1, 32))
    graphed._restore(fresh)
    torch.testing.assert_close(list(model.parameters()), fresh[0])
    assert all(v.abs().sum() == 0 for st in opt.state.values() for v in st.values())
    assert sums.abs().sum() == 0

    step(torch.arange(32).view(1, 32))  # mid-training: Adam's moments must survive a second capture
    mid = graphed._snapshot()
    step(torch.arange(32, 64).view(1, 32))
    graphed._restore(mid)
    torch.testing.assert_close(list(model.parameters()), mid[0])
    for p, st in opt.state.items():
        for k, v in st.items():
            torch.testing.assert_close(v, mid[1][p][k])
    torch.testing.assert_close(sums, mid[2])
