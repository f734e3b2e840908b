"""One training step: the loss that keeps seeds apart, the set-up the stage and the benchmarks
share, the step function itself, and the CUDA-graph step's bookkeeping (on the CPU)."""

from __future__ import annotations

import pytest
import torch

from cifar10_tricks import cifar, params
from cifar10_tricks.model import Net, stack_images
from cifar10_tricks.step import GraphedStep, fresh_stack, loss_fn, train_step
from stages.train import model_config
from tests.conftest import STATS


def test_fresh_stack_builds_seeded_models_adam_and_sums_on_the_datas_device(data):
    v = params.Variant(lr=2e-3, weight_decay=1e-4)
    t = fresh_stack(model_config(v, STATS, cifar.CLASSES), (3, 4), v, data, "fp32")
    assert t.model.seeds == (3, 4) and t.opt.lr == 2e-3 and t.opt.weight_decay == 1e-4
    assert t.sums.shape == (2, 2) and t.sums.dtype == torch.float64 and not t.sums.any()
    again = fresh_stack(model_config(v, STATS, cifar.CLASSES), (3, 4), v, data, "fp32")
    assert torch.equal(again.model.conv1.weight, t.model.conv1.weight)  # seeded: the same init
    t.step(torch.arange(64).view(2, 32))
    assert t.sums[:, 1].sum() > 0 and t.sums[:, 0].min() > 0  # each seed's NLL sum and hits
    assert not torch.equal(again.model.conv1.weight, t.model.conv1.weight)  # Adam stepped
    assert torch.initial_seed() == 3  # torch's global generator, from the stack's first seed


def test_the_stacks_step_is_train_step(data):
    """On the CPU the benchmarks' ``Stack.step`` is exactly train_step: one call of each from
    the same start ends with the same weights, Adam state and sums, bit for bit."""
    v = params.Variant(lr=2e-3, weight_decay=1e-4, l1=1e-5, dropout_dense=0.2)
    cfg = model_config(v, STATS, cifar.CLASSES)
    a, b = (fresh_stack(cfg, (0, 1), v, data, "fp32") for _ in range(2))
    idx = torch.arange(64).view(2, 32)
    a.step(idx)
    train_step(b, idx)
    assert torch.equal(a.sums, b.sums) and a.sums[:, 1].sum() > 0
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)
        assert torch.equal(a.opt.state[p]["exp_avg"], b.opt.state[q]["exp_avg"])


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
    loss, nll = loss_fn(stack, stack(stack_images(x)), y, v.l1)
    loss.backward()
    alone = stack.single(1)
    one_loss, _ = loss_fn(alone, alone(stack_images(x[1:2])), y[1:2], v.l1)
    one_loss.backward()
    for name, p in stack.named_parameters():
        torch.testing.assert_close(
            p.grad.chunk(3)[1], dict(alone.named_parameters())[name].grad, rtol=1e-4, atol=1e-6
        )


@pytest.mark.parametrize(
    "knobs", [{}, {"optimizer": "sgd", "momentum": 0.9, "activation": "tanh"}], ids=["adam", "sgd"]
)
def test_graph_capture_restores_params_masks_step_optimizer_state_and_sums(
    data, monkeypatch, knobs
):
    """What GraphedStep saves around its warm-up steps comes back exactly (checked on CPU, on
    the masks CUDA draws): the warm-up draws none of the real steps' masks, and Adam's moments
    or SGD's momentum buffers are as they were."""
    monkeypatch.setattr(Net, "cpu_masks", "hashed")
    v = params.Variant(dropout_conv=0.2, **knobs)
    t = fresh_stack(
        model_config(v, STATS, cifar.CLASSES), (0,), v, data, "fp32"
    )  # eager on the CPU
    model, opt, sums, step = t.model, t.opt, t.sums, t.step
    graphed = GraphedStep(t)

    fresh = graphed._snapshot()  # before any step: no Adam state yet
    step(torch.arange(32).view(1, 32))
    assert model.dropout_step.item() == 1
    graphed._restore(fresh)
    torch.testing.assert_close(graphed._tensors(), fresh[0])
    assert model.dropout_step.item() == 0  # the next step draws the first step's masks
    assert all(v.abs().sum() == 0 for st in opt.state.values() for v in st.values())
    assert sums.abs().sum() == 0

    step(torch.arange(32).view(1, 32))  # mid-training: Adam's moments must survive a second capture
    mid = graphed._snapshot()
    step(torch.arange(32, 64).view(1, 32))
    graphed._restore(mid)
    torch.testing.assert_close(graphed._tensors(), mid[0])
    for p, st in opt.state.items():
        for k, v in st.items():
            torch.testing.assert_close(v, mid[1][p][k])
    torch.testing.assert_close(sums, mid[2])


def test_mse_is_the_brier_score_of_the_softmax_per_seed():
    """loss mse: each seed's mean over its images of sum_c (softmax_c - onehot_c)^2, summed over
    seeds; the NLL returned is the same as with cross-entropy (the curves report it for all)."""
    model = Net(model_config(params.Variant(), STATS, cifar.CLASSES))
    log_probs = torch.log_softmax(torch.randn(2, 4, 10), -1)
    y = torch.randint(0, 10, (2, 4))
    loss, nll = loss_fn(model, log_probs, y, l1=0.0, kind="mse")
    onehot = torch.nn.functional.one_hot(y, 10).float()
    brier = ((log_probs.exp() - onehot) ** 2).sum(-1).mean(1).sum()
    torch.testing.assert_close(loss, brier)
    _, nll_ce = loss_fn(model, log_probs, y, l1=0.0)
    assert torch.equal(nll, nll_ce)
