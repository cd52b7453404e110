"""MINE's estimate, MIC's losses and the identity-leakage probe."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fer_models import create_model, example_inputs
from fer_models.layers import MINE
from fer_models.mic import identity_leakage, split_within_subjects

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores: see conftest


TINY_MIC = {"image_size": 32, "frames": 4, "code_dim": 16, "hidden": 16, "cnn_width": 8, "mine_hidden": 16,
            "identity_backbone": "mobilenetv3_small_050"}


def gaussian_pairs(n: int, rho: float, dim: int, generator: torch.Generator):
    x = torch.randn(n, dim, generator=generator)
    z = rho * x + math.sqrt(1 - rho ** 2) * torch.randn(n, dim, generator=generator)
    return x, z


def trained_mine_estimate(rho: float, dim: int = 2, steps: int = 300, ema_rate: float | None = 0.01) -> float:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    mine = MINE(dim, dim, hidden=64, ema_rate=ema_rate)
    opt = torch.optim.Adam(mine.parameters(), lr=3e-3)
    for _ in range(steps):
        x, z = gaussian_pairs(256, rho, dim, gen)
        surrogate, _ = mine.training_objective(x, z)
        opt.zero_grad()
        (-surrogate).backward()
        opt.step()
    mine.eval()
    x, z = gaussian_pairs(8192, rho, dim, gen)
    with torch.no_grad():
        return float(mine.estimate(x, z))


def test_mine_is_clearly_positive_for_correlated_gaussians():
    true_mi = -2 * 0.5 * math.log(1 - 0.9 ** 2)  # two independent pairs with rho = 0.9: 1.66 nats
    estimate = trained_mine_estimate(0.9)
    assert 0.8 < estimate <= true_mi + 0.1, estimate


def test_mine_plain_dv_gradient_also_learns():
    assert trained_mine_estimate(0.9, ema_rate=None) > 0.8


def test_mine_is_near_zero_for_independent_gaussians():
    assert abs(trained_mine_estimate(0.0)) < 0.1


def _classification():
    from bench.training.tasks import Classification

    return Classification()


def test_mic_total_loss_is_ce_when_alpha_and_beta_are_zero():
    torch.manual_seed(0)
    model = create_model("mic", num_classes=4, alpha=0.0, beta=0.0, **TINY_MIC)
    x, target = example_inputs(model, batch_size=4), torch.tensor([0, 1, 2, 3])
    out = _classification()(model(x), target)
    assert out["loss"].item() == pytest.approx(out["ce"].item(), abs=1e-7)
    assert out["aux/mi"].item() == 0.0 and out["aux/l1"].item() == 0.0


def test_mic_losses_reach_the_right_parameters():
    torch.manual_seed(0)
    model = create_model("mic", num_classes=4, alpha=0.5, beta=1.0, **TINY_MIC)
    x = example_inputs(model, batch_size=4)
    aux = model(x)["aux_losses"]
    # the statistics network's own term is value-free: "mi" reports exactly alpha * the DV estimate
    assert aux["mi"].item() == pytest.approx(0.5 * model.last_mi_estimate, abs=1e-5)
    aux["mi"].backward()
    t_grads = [p.grad for p in model.mine.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in t_grads)  # T learns from the DV bound
    assert model.to_code.weight.grad.abs().sum() > 0  # the encoder feels the MI penalty
    assert all(p.grad is None for p in model.identity.parameters())  # the identity encoder is frozen
    assert all(not p.requires_grad for p in model.identity.parameters())
    model.train()
    assert not model.identity.training


def test_mic_loads_facenet_identity_weights_from_a_local_file(tmp_path):
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    weights = tmp_path / "facenet.pt"
    reference = InceptionResnetV1(pretrained=None, classify=False).eval()
    torch.save(reference.state_dict(), weights)
    model = create_model("mic", num_classes=3, identity_weights=str(weights), **TINY_MIC).eval()
    assert model.identity.dim == 512
    x = example_inputs(model, batch_size=2)
    with torch.no_grad():
        z_i = model.identity(x["iframe"])
        expected = reference(torch.nn.functional.interpolate(x["iframe"], size=(160, 160), mode="bilinear"))
    torch.testing.assert_close(z_i, expected)
    with pytest.raises(FileNotFoundError):
        create_model("mic", num_classes=3, identity_weights=str(tmp_path / "missing.pt"), **TINY_MIC)


def test_identity_leakage_probe():
    rng = np.random.default_rng(0)
    subjects = np.repeat(np.arange(5), 20)
    leaky = rng.normal(size=(100, 8)) * 0.1 + np.eye(8)[subjects] * 2  # subject written into the code
    clean = rng.normal(size=(100, 8))
    fit, score = split_within_subjects(subjects, 0.5, seed=0)
    assert set(subjects[fit]) == set(subjects[score]) == set(range(5))
    high = identity_leakage(leaky[fit], subjects[fit], leaky[score], subjects[score])
    low = identity_leakage(clean[fit], subjects[fit], clean[score], subjects[score])
    assert high > 0.95 and low < 0.5
    with pytest.raises(ValueError, match="no validation subject"):
        identity_leakage(clean[:50], subjects[:50], clean[60:], subjects[60:] + 10)
