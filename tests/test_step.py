"""One training step: Adam as torch's, the loss that keeps seeds apart, the set-up the stage and
the benchmarks share, and the CUDA-graph step's bookkeeping (on the CPU)."""

from __future__ import annotations

import pytest
import torch

from stages import cifar, params
from stages.model import Net, stack_images
from stages.step import GraphedStep, loss_fn, make_optimizer, prepare
from stages.train import model_config
from tests.conftest import CPU, STATS, run_python


def test_prepare_builds_fresh_seeded_models_adam_and_sums_on_the_datas_device(data):
    v = params.Variant(lr=2e-3, weight_decay=1e-4)
    t = prepare(model_config(v, STATS, cifar.CLASSES), (3, 4), v, data, "fp32")
    assert t.model.seeds == (3, 4) and t.opt.lr == 2e-3 and t.opt.weight_decay == 1e-4
    assert t.sums.shape == (2, 2) and t.sums.dtype == torch.float64 and not t.sums.any()
    again = prepare(model_config(v, STATS, cifar.CLASSES), (3, 4), v, data, "fp32")
    assert torch.equal(again.model.conv1.weight, t.model.conv1.weight)  # seeded: the same init
    t.step(torch.arange(64).view(2, 32))
    assert t.sums[:, 1].sum() > 0 and t.sums[:, 0].min() > 0  # each seed's NLL sum and hits
    assert not torch.equal(again.model.conv1.weight, t.model.conv1.weight)  # Adam stepped
    assert torch.initial_seed() == 3  # torch's global generator, from the stack's first seed


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
            (
                model(x)[:, :, step % 10].sum() + 0.01 * sum(w.abs().sum() for w in model.weights())
            ).backward()
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

    code = (
        "import sys, torch; from stages import params; from stages.model import Net, ModelConfig; "
        "from stages.step import make_optimizer; m = Net(ModelConfig()); "
        "opt = make_optimizer(m, params.Variant(weight_decay=1e-4), torch.device('cpu')); "
        "m(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).sum().backward(); "
        "opt.step(); opt.zero_grad(); "
        "opt.decay(); print('torch._dynamo' in sys.modules)"
    )
    out = run_python("-c", code, check=True)
    assert out.stdout.split() == ["False"]


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


def test_graph_capture_restores_params_adam_state_and_sums(data):
    """What GraphedStep saves around its warm-up steps comes back exactly (checked on CPU)."""
    v = params.Variant()
    t = prepare(model_config(v, STATS, cifar.CLASSES), (0,), v, data, "fp32")  # eager on the CPU
    model, opt, sums, step = t.model, t.opt, t.sums, t.step
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
