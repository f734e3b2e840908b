"""Adam: torch's own update bit for bit, with ExponentialLR's decay, and no torch._dynamo import."""

from __future__ import annotations

import pytest
import torch

from cifar10_tricks import cifar, params
from cifar10_tricks.adam import make_optimizer
from cifar10_tricks.model import Net
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


def test_a_training_step_does_not_import_torch_dynamo():
    """torch.optim's classes import torch._dynamo (1.5-4.6 s per train stage); ours must not."""

    code = (
        "import sys, torch; from cifar10_tricks import params; "
        "from cifar10_tricks.model import Net, ModelConfig; "
        "from cifar10_tricks.adam import make_optimizer; m = Net(ModelConfig()); "
        "opt = make_optimizer(m, params.Variant(weight_decay=1e-4), torch.device('cpu')); "
        "m(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).sum().backward(); "
        "opt.step(); opt.zero_grad(); "
        "opt.decay(); print('torch._dynamo' in sys.modules)"
    )
    out = run_python("-c", code, check=True)
    assert out.stdout.split() == ["False"]
