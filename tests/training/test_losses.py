"""Losses against hand-computed values and a finite-difference gradient penalty."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_chromagan.model.generator import Critic, ModelConfig
from training.losses import critic_loss, gradient_penalty, kl_teacher_student, mse_ab

SMALL = ModelConfig(width=0.0625, image_size=32)


def test_mse_is_the_per_element_mean():
    pred = torch.tensor([[[[0.0, 1.0]], [[0.5, 0.25]]]])  # (1, 2, 1, 2)
    target = torch.zeros_like(pred)
    assert mse_ab(pred, target).item() == pytest.approx((0 + 1 + 0.25 + 0.0625) / 4)


def test_kl_matches_a_hand_computation_with_keras_clipping():
    t = np.array([[0.7, 0.2, 0.1, 0.0], [0.25, 0.25, 0.25, 0.25]])
    p = np.array([[0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4]])
    logits = torch.tensor(np.log(p) + 3.0)  # softmax is shift-invariant
    tc, pc = np.clip(t, 1e-7, 1), np.clip(p, 1e-7, 1)
    expected = np.mean(np.sum(tc * np.log(tc / pc), axis=1))
    assert kl_teacher_student(torch.tensor(t), logits).item() == pytest.approx(expected, rel=1e-6)
    # KL of a distribution with itself is zero
    assert kl_teacher_student(torch.tensor(p), torch.tensor(np.log(p))).item() == pytest.approx(
        0, abs=1e-7
    )


def _critic64(seed: int = 0) -> Critic:
    torch.manual_seed(seed)
    return Critic(SMALL).double()


def test_gradient_penalty_agrees_with_finite_differences():
    critic = _critic64()
    n, s = 2, 8
    g = torch.Generator().manual_seed(1)
    L = torch.rand(n, 1, s, s, generator=g, dtype=torch.float64)
    real = torch.rand(n, 2, s, s, generator=g, dtype=torch.float64)
    fake = torch.rand(n, 2, s, s, generator=g, dtype=torch.float64)
    eps = torch.rand(n, 1, 1, 1, generator=g, dtype=torch.float64)
    penalty = gradient_penalty(critic, L, real, fake, eps).item()

    x_hat = eps * real + (1 - eps) * fake
    h = 1e-6
    norms = []
    with torch.no_grad():
        for i in range(n):
            grad = np.zeros(x_hat[i].numel())
            flat = x_hat[i].reshape(-1)
            for k in range(flat.numel()):
                up, down = x_hat.clone(), x_hat.clone()
                up[i].view(-1)[k] += h
                down[i].view(-1)[k] -= h
                # the sum of sample i's patch scores (samples do not interact: no normalisation)
                grad[k] = (critic(L, up)[i].sum() - critic(L, down)[i].sum()).item() / (2 * h)
            norms.append(np.linalg.norm(grad))
    expected = np.mean([(1 - v) ** 2 for v in norms])
    assert penalty == pytest.approx(expected, rel=1e-6)
    assert penalty > 0


def test_gradient_penalty_trains_the_critic():
    """The penalty is differentiable in the critic's weights (double backward)."""
    critic = _critic64()
    L, real, fake = (torch.rand(2, c, 8, 8, dtype=torch.float64) for c in (1, 2, 2))
    eps = torch.rand(2, 1, 1, 1, dtype=torch.float64)
    gradient_penalty(critic, L, real, fake, eps).backward()
    # every kernel gets a gradient (the last bias cannot: it does not change d(sum D)/dx)
    grads = [p.grad for name, p in critic.named_parameters() if name.endswith("weight")]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_critic_loss_is_the_sum_of_its_parts():
    critic = _critic64(3)
    L, real, fake = (torch.rand(3, c, 16, 16, dtype=torch.float64) for c in (1, 2, 2))
    eps = torch.rand(3, 1, 1, 1, dtype=torch.float64)
    loss, parts = critic_loss(critic, L, real, fake, eps, gp_weight=10.0)
    with torch.no_grad():
        d_real = critic(L, real).mean().item()
        d_fake = critic(L, fake).mean().item()
    gp = gradient_penalty(critic, L, real, fake, eps).item()
    assert parts["disc_real"].item() == pytest.approx(d_real, rel=1e-9)
    assert parts["disc_fake"].item() == pytest.approx(d_fake, rel=1e-9)
    assert parts["disc_gp"].item() == pytest.approx(gp, rel=1e-9)
    assert loss.item() == pytest.approx(d_fake - d_real + 10 * gp, rel=1e-9)
    loss_no_gp, parts_no_gp = critic_loss(critic, L, real, fake, eps, gp_weight=0.0)
    assert loss_no_gp.item() == pytest.approx(d_fake - d_real, rel=1e-9)
    assert parts_no_gp["disc_gp"].item() == 0


def test_penalty_is_one_for_a_critic_with_zero_gradient():
    critic = _critic64()
    with torch.no_grad():
        for p in critic.parameters():
            p.zero_()
    L, real, fake = (torch.rand(2, c, 8, 8, dtype=torch.float64) for c in (1, 2, 2))
    eps = torch.rand(2, 1, 1, 1, dtype=torch.float64)
    assert gradient_penalty(critic, L, real, fake, eps).item() == pytest.approx(1.0)
    assert not math.isnan(gradient_penalty(critic, L, real, fake, eps).item())
