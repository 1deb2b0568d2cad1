"""The network library's batched paths give what the plain formulation gives (fp32, within 1e-5)."""

from __future__ import annotations

import pytest
import torch

from robo_offline.algos.calql import CalQL, CalQLConfig
from robo_offline.algos.nets import Critic, EnsembleLinear
from robo_offline.data import Batch

torch.set_num_threads(1)


def plain_many(critic: Critic, obs: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """K actions per state the plain way: one `forward` per action."""
    return torch.stack([critic(obs, a) for a in acts], dim=1)


@pytest.mark.parametrize("n_critics, hidden", [(2, [256, 256]), (1, [32]), (5, [64, 64, 64])])
def test_critic_many_matches_one_call_per_action_in_values_and_gradients(n_critics, hidden):
    torch.manual_seed(0)
    critic = Critic(30, 7, hidden, n_critics)
    obs, acts = torch.randn(64, 30), torch.rand(13, 64, 7) * 2 - 1
    fast, plain = critic.many(obs, acts), plain_many(critic, obs, acts)
    assert fast.shape == (n_critics, 13, 64)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-5)
    g_fast = torch.autograd.grad(fast.square().mean(), list(critic.parameters()))
    g_plain = torch.autograd.grad(plain.square().mean(), list(critic.parameters()))
    for a, b in zip(g_fast, g_plain):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_single_output_layer_equals_the_batched_matmul():
    torch.manual_seed(0)
    layer = EnsembleLinear(256, 1, 2)
    x = torch.randn(2, 300, 256)
    torch.testing.assert_close(layer(x), torch.baddbmm(layer.bias, x, layer.weight), rtol=0, atol=1e-5)


def test_single_output_layer_keeps_bf16_activations_in_bf16_under_autocast():
    """Under bf16 autocast the Q head is a bf16 matmul: the fp32 dot product would promote the activations to fp32
    (the slow path measured on AMX CPUs); its values agree with fp32 within bf16 rounding."""
    torch.manual_seed(0)
    layer = EnsembleLinear(256, 1, 2)
    x = torch.randn(2, 300, 256)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q = layer(x.bfloat16())
    assert q.dtype == torch.bfloat16
    torch.testing.assert_close(q.float(), layer(x), rtol=0.02, atol=0.1)


def test_cql_critic_loss_is_unchanged_by_the_batched_path(monkeypatch):
    """Cal-QL's whole critic loss (data, uniform, policy and backup actions) equals one critic call per action's."""
    torch.manual_seed(0)
    algo = CalQL(CalQLConfig(hidden_dims=[64, 64], n_actions=4), 11, 3)
    g = torch.Generator().manual_seed(1)
    b = 32
    batch = Batch(
        torch.randn(b, 11, generator=g),
        torch.rand(b, 3, generator=g) * 2 - 1,
        torch.randn(b, generator=g),
        torch.randn(b, 11, generator=g),
        (torch.rand(b, generator=g) < 0.1).float(),
        torch.randn(b, generator=g) - 5.0,
    )
    alpha, noise = torch.ones(()), algo.update_noise(b)
    fast, _, fast_info = algo._critic_loss(batch, alpha, noise)
    for critic in (algo.critic, algo.critic_target):
        monkeypatch.setattr(critic, "many", lambda o, a, c=critic: plain_many(c, o, a))
    plain, _, plain_info = algo._critic_loss(batch, alpha, noise)
    torch.testing.assert_close(fast, plain, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(fast_info["q_data"], plain_info["q_data"], rtol=0, atol=1e-5)
