"""ChromaGAN's losses, as docs/model.md ("Losses") describes them.

Shapes: ``ab`` tensors are float (N, 2, S, S) in the generator's sigmoid scale ((a* + 128) / 255);
``L`` is float (N, 1, S, S) in [0, 1]; critic scores are (N, 1, S/8, S/8) patch maps.

Objectives per iteration (the paper's λ_g = 0.1, λ_s = 0.003, gradient-penalty weight 10):

* generator: ``MSE + λ_s·KL(teacher ‖ class head) − λ_g·mean(D(L, G(L)))``
* critic:    ``−mean(D(L, ab_real)) + mean(D(L, ab_fake)) + 10·mean((1 − ‖∇_x̂ ΣD(L, x̂)‖)²)``
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["KERAS_EPSILON", "critic_loss", "gradient_penalty", "kl_teacher_student", "mse_ab"]

KERAS_EPSILON = 1e-7  # Keras clips both distributions to [1e-7, 1] inside its `kld`


def _full(x: Tensor) -> Tensor:
    """float32 for low-precision tensors; float64 stays float64 (for numerical checks)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def mse_ab(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over every element of the ab maps (Keras ``mse`` as the authors used it).

    The paper writes a squared L2 norm; the code averages per element, which only rescales λ.
    Computed in float32 even under autocast.
    """
    return F.mse_loss(_full(pred), _full(target))


def kl_teacher_student(teacher_probs: Tensor, student_logits: Tensor) -> Tensor:
    """KL(teacher ‖ student), summed over classes and averaged over the batch.

    As Keras' ``kld``: both distributions are clipped to [1e-7, 1] before ``Σ t·log(t / p)``.
    The student is given as logits; its probabilities come from a float32 softmax.
    """
    p = torch.softmax(_full(student_logits), dim=1).clamp(KERAS_EPSILON, 1.0)
    t = _full(teacher_probs).clamp(KERAS_EPSILON, 1.0)
    return (t * (t.log() - p.log())).sum(dim=1).mean()


def _penalty(scores_hat: Tensor, x_hat: Tensor) -> Tensor:
    (grad,) = torch.autograd.grad(scores_hat.sum(), x_hat, create_graph=True)
    return ((1.0 - grad.flatten(1).norm(2, dim=1)) ** 2).mean()


def gradient_penalty(
    critic: nn.Module, L: Tensor, ab_real: Tensor, ab_fake: Tensor, epsilon: Tensor
) -> Tensor:
    """WGAN-GP on interpolates of ab only (L passes unchanged), as the authors: mean((1 − ‖g‖)²).

    ``g`` is the gradient of the *sum* of the critic's patch scores with respect to
    ``x̂ = ε·ab_real + (1 − ε)·ab_fake``, its L2 norm taken over all non-batch axes.
    ``epsilon``: (N, 1, 1, 1) drawn from U[0, 1). Always computed in float32, outside autocast:
    the double backward of a low-precision norm is where mixed precision goes wrong.
    """
    with torch.autocast(device_type=L.device.type, enabled=False):
        x_hat = (
            (epsilon * _full(ab_real) + (1.0 - epsilon) * _full(ab_fake))
            .detach()
            .requires_grad_(True)
        )
        return _penalty(critic(_full(L), x_hat), x_hat)


def critic_loss(
    critic: nn.Module,
    L: Tensor,
    ab_real: Tensor,
    ab_fake: Tensor,
    epsilon: Tensor,
    gp_weight: float = 10.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The critic's WGAN-GP loss and its parts (``disc_real``, ``disc_fake``, ``disc_gp``).

    Real, fake and interpolated samples go through the critic in ONE float32 forward (it has no
    normalisation, so this equals three forwards): one forward per backward is what DDP expects,
    and the critic is small enough that fp32 costs little.
    """
    n = L.shape[0]
    with torch.autocast(device_type=L.device.type, enabled=False):
        real, fake = _full(ab_real), _full(ab_fake.detach())
        x_hat = (epsilon * real + (1.0 - epsilon) * fake).detach().requires_grad_(gp_weight > 0)
        scores = critic(_full(L).repeat(3, 1, 1, 1), torch.cat([real, fake, x_hat]))
        s_real, s_fake, s_hat = scores[:n].mean(), scores[n : 2 * n].mean(), scores[2 * n :]
        gp = _penalty(s_hat, x_hat) if gp_weight > 0 else s_real.new_zeros(())
        loss = s_fake - s_real + gp_weight * gp
    return loss, {
        "disc_real": s_real.detach(),
        "disc_fake": s_fake.detach(),
        "disc_gp": gp.detach(),
    }
