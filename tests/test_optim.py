"""Adam and SGD: torch's own updates bit for bit, with ExponentialLR's decay, L2 only where a
step regularises, and no torch._dynamo import."""

from __future__ import annotations

import pytest
import torch

from cifar10_tricks import cifar, params
from cifar10_tricks.model import Net
from cifar10_tricks.optim import make_optimizer
from stages.train import model_config
from tests.conftest import CPU, STATS, run_python


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


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_is_torchs_sgd_with_momentum_and_exponential_lr_bit_for_bit(momentum):
    """Ten steps over three epochs: the same weights and momentum buffers as torch.optim.SGD
    (foreach, L2 weight decay) driven by ExponentialLR."""
    v = params.Variant(optimizer="sgd", momentum=momentum, weight_decay=1e-3, lr=1e-4, lr_decay=0.8)
    ours_model = Net(model_config(v, STATS, cifar.CLASSES), (0, 1))
    ref_model = Net(model_config(v, STATS, cifar.CLASSES), (0, 1))
    ours = make_optimizer(ours_model, v, CPU)
    ref = torch.optim.SGD(
        ref_model.parameters(), lr=1e-4, momentum=momentum, weight_decay=1e-3, foreach=True
    )
    sched = torch.optim.lr_scheduler.ExponentialLR(ref, gamma=0.8)
    x = torch.randint(0, 256, (8, 6, 32, 32), dtype=torch.uint8)
    for step in range(10):
        for model, opt in ((ours_model, ours), (ref_model, ref)):
            opt.zero_grad()
            model(x)[:, :, step % 10].sum().backward()
            opt.step()
        if step % 4 == 3:
            ours.decay()
            sched.step()
    for p, q in zip(ours_model.parameters(), ref_model.parameters()):
        assert torch.equal(p, q) and torch.isfinite(p).all()
        if momentum:
            assert torch.equal(ours.state[p]["momentum_buffer"], ref.state[q]["momentum_buffer"])
    assert ours.lr == sched.get_last_lr()[0]


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_a_step_that_does_not_regularise_applies_no_weight_decay(kind):
    """step(regularize=False) is the step of the same optimizer with weight_decay 0."""
    v = params.Variant(optimizer=kind, weight_decay=0.1, lr=0.01)
    models = [Net(model_config(v, STATS, cifar.CLASSES)) for _ in range(3)]
    late = make_optimizer(models[0], v, CPU)
    none = make_optimizer(models[1], params.Variant(optimizer=kind, lr=0.01), CPU)
    now = make_optimizer(models[2], v, CPU)
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    for model, opt, regularize in ((models[0], late, False), (models[1], none, True)):
        model(x).sum().backward()
        opt.step(regularize)
    models[2](x).sum().backward()
    now.step(True)
    assert torch.equal(models[0].conv1.weight, models[1].conv1.weight)
    assert not torch.equal(models[0].conv1.weight, models[2].conv1.weight)


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_a_training_step_does_not_import_torch_dynamo(kind):
    """torch.optim's classes import torch._dynamo (1.5-4.6 s per train stage); ours must not."""

    code = (
        "import sys, torch; from cifar10_tricks import params; "
        "from cifar10_tricks.model import Net, ModelConfig; "
        "from cifar10_tricks.optim import make_optimizer; m = Net(ModelConfig()); "
        f"opt = make_optimizer(m, params.Variant(weight_decay=1e-4, optimizer={kind!r}, "
        f"momentum={0.9 if kind == 'sgd' else 0.0}), torch.device('cpu')); "
        "m(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).sum().backward(); "
        "opt.step(); opt.zero_grad(); "
        "opt.decay(); print('torch._dynamo' in sys.modules)"
    )
    out = run_python("-c", code, check=True)
    assert out.stdout.split() == ["False"]
