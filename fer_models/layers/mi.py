"""MINE: mutual information neural estimation (Belghazi et al., 2018), Donsker-Varadhan bound.

``I(X; Z) >= E_joint[T] - log E_marginals[exp T]``. Samples of the product of marginals are the
batch's own pairs with one side shuffled (``torch.randperm``), so no extra data is needed.

Gradient: the plain DV gradient is biased by the mini-batch estimate of ``E[exp T]`` in the
denominator; with ``ema_rate`` set (default, as in the paper) the statistics network is trained on
a surrogate whose gradient divides by a moving average of ``E[exp T]`` instead. The *value*
reported is always the plain DV estimate. ``ema_rate=None`` trains on plain DV.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.func import functional_call


class StatisticsNetwork(nn.Module):
    """T(x, z): an MLP on the concatenated pair, one scalar per pair."""

    def __init__(self, x_dim: int, z_dim: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(x_dim + z_dim, hidden), nn.ELU(),
            nn.Linear(hidden, hidden), nn.ELU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, z], dim=1)).squeeze(1)


class MINE(nn.Module):
    def __init__(self, x_dim: int, z_dim: int, hidden: int = 128, ema_rate: float | None = 0.01):
        super().__init__()
        self.statistics = StatisticsNetwork(x_dim, z_dim, hidden)
        self.ema_rate = ema_rate
        self.register_buffer("ema_exp", torch.zeros(()))  # moving average of E_marg[exp T]; 0 = unset

    def _scores(self, x, z, perm, frozen: bool):
        if frozen:  # same T, but no gradient reaches its parameters
            params = {k: v.detach() for k, v in self.statistics.named_parameters()}
            call = lambda a, b: functional_call(self.statistics, params, (a, b))  # noqa: E731
        else:
            call = self.statistics
        return call(x, z), call(x, z[perm])

    @staticmethod
    def dv(joint: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
        # log-mean-exp through logsumexp: exp(T) overflows once T grows
        return joint.mean() - (torch.logsumexp(marginal, 0) - math.log(marginal.numel()))

    def estimate(self, x: torch.Tensor, z: torch.Tensor, perm: torch.Tensor | None = None,
                 frozen: bool = False) -> torch.Tensor:
        """The DV lower bound on I(x; z), differentiable w.r.t. x and z (and T unless frozen)."""
        perm = torch.randperm(x.shape[0], device=x.device) if perm is None else perm
        joint, marginal = self._scores(x, z, perm, frozen)
        return self.dv(joint, marginal)

    def training_objective(self, x: torch.Tensor, z: torch.Tensor,
                           perm: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(surrogate, dv_estimate)``: maximise ``surrogate`` to train T.

        Callers pass detached codes when only T should learn from this term.
        """
        perm = torch.randperm(x.shape[0], device=x.device) if perm is None else perm
        joint, marginal = self._scores(x, z, perm, frozen=False)
        estimate = self.dv(joint, marginal)
        if self.ema_rate is None or not self.training:
            return estimate, estimate
        mean_exp = torch.exp(marginal.clamp(max=30.0)).mean()
        with torch.no_grad():
            if self.ema_exp.item() == 0:  # first batch: start the average at its value
                self.ema_exp.copy_(mean_exp.detach())
            else:
                self.ema_exp.mul_(1 - self.ema_rate).add_(self.ema_rate * mean_exp.detach())
        surrogate = joint.mean() - mean_exp / self.ema_exp.clamp(min=1e-6)
        return surrogate, estimate
