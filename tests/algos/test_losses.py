"""Loss functions of the offline-RL algorithms on tiny tensors whose values are worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from robo_offline.algos.bcq import (
    BCQ,
    BCQConfig,
    BCQPolicy,
    eval_latents,
    soft_clipped_double_q,
    vae_loss,
)
from robo_offline.algos.calql import CalQL, CalQLConfig, calql_bound
from robo_offline.algos.cql import (
    CQL,
    CQLConfig,
    conservative_gap,
    entropy_temperature_loss,
    importance_sampled_logsumexp,
    max_backup,
)
from robo_offline.algos.iql import (
    IQL,
    IQLConfig,
    awr_weights,
    expectile_loss,
    iql_reward_scale,
    weighted_nll,
)
from robo_offline.algos.td3bc import smoothed_target_action, td3bc_actor_loss
from robo_offline.data import Batch

torch.set_num_threads(1)
T = torch.tensor


# -- IQL ----------------------------------------------------------------------------------------
def test_expectile_loss_weights_residuals_asymmetrically():
    # diff = Q - V = [-2, -1, 0, 1, 2], tau = 0.7: weight 0.3 below zero, 0.7 at/above.
    # w * diff^2 = [0.3*4, 0.3*1, 0.7*0, 0.7*1, 0.7*4] = [1.2, 0.3, 0, 0.7, 2.8]; mean = 5.0 / 5 = 1.0
    assert expectile_loss(T([-2.0, -1.0, 0.0, 1.0, 2.0]), 0.7).item() == pytest.approx(1.0)
    # diff = [-1, 2], tau = 0.9: [0.1 * 1, 0.9 * 4] = [0.1, 3.6] -> mean 1.85
    assert expectile_loss(T([-1.0, 2.0]), 0.9).item() == pytest.approx(1.85)


def test_advantage_weights_are_clipped_at_100():
    # beta = 3: exp(3 * [0, -1, 2, 1]) = [1, e^-3 = 0.049787, e^6 = 403.43 -> clipped to 100, e^3 = 20.0855]
    w = awr_weights(T([0.0, -1.0, 2.0, 1.0]), beta=3.0, max_weight=100.0)
    assert w.tolist() == pytest.approx([1.0, math.exp(-3), 100.0, math.exp(3)], rel=1e-6)
    # exp overflow (inf) is clipped too, never NaN
    assert awr_weights(T([1e4]), 3.0, 100.0).item() == 100.0
    # weighted NLL with log-probs [-1, -2, -0.5, 0]: -(1*-1 + 0.049787*-2 + 100*-0.5 + 20.09*0) / 4
    #   = (1 + 0.099574 + 50) / 4 = 12.774894
    assert weighted_nll(T([-1.0, -2.0, -0.5, 0.0]), w).item() == pytest.approx(12.774894, rel=1e-6)


def test_iql_reward_scale_is_horizon_over_return_spread_for_dense_rewards_only():
    # returns 10, 510, 260: spread 500 -> scale 1000 / 500 = 2
    assert iql_reward_scale(T([10.0, 510.0, 260.0])) == pytest.approx(2.0)
    assert iql_reward_scale(T([3.0, 3.0])) == 1.0  # degenerate spread: identity
    algo = IQL(IQLConfig(hidden_dims=[8]), 3, 2)  # reward_norm auto
    # dense rewards: the env's episode length over the spread (1000 for D4RL locomotion, as the paper)
    assert algo.reward_transform(T([0.0, 250.0]), horizon=1000, sparse=False) == (pytest.approx(4.0), 0.0)
    assert algo.reward_transform(T([0.0, 50.0]), horizon=100, sparse=False) == (pytest.approx(2.0), 0.0)
    assert algo.reward_transform(T([0.0, 50.0]), horizon=100, sparse=True) == (1.0, -1.0)  # success: r - 1 (AntMaze)
    none = IQL(IQLConfig(hidden_dims=[8], reward_norm="none"), 3, 2)
    assert none.reward_transform(T([0.0, 250.0]), horizon=1000, sparse=False) == (1.0, 0.0)
    antmaze = IQL(IQLConfig(hidden_dims=[8], reward_norm="antmaze"), 3, 2)
    assert antmaze.reward_transform(T([0.0, 1.0]), horizon=1000, sparse=True) == (1.0, -1.0)  # r - 1
    with pytest.raises(ValueError, match="reward_norm"):
        IQL(IQLConfig(reward_norm="minmax"), 3, 2)


# -- CQL ----------------------------------------------------------------------------------------
def test_importance_sampled_logsumexp_by_hand():
    # One critic, N = 1 candidate per proposal, one state, act_dim = 1 (uniform density 0.5, log = -ln 2):
    # Q_rand = 1, Q_cur = 2 with log pi = 2, Q_next = 0 with log pi = 0
    # terms: 1 - (-ln 2) = 1 + ln 2, 2 - 2 = 0, 0 - 0 = 0 -> exp: 2e, 1, 1 -> logsumexp = ln(2e + 2)
    def one(v: float) -> torch.Tensor:
        return T([[[v]]])  # (C=1, N=1, B=1)

    args = (one(1.0), one(2.0), one(0.0), T([[2.0]]), T([[0.0]]), 1)
    assert importance_sampled_logsumexp(*args).item() == pytest.approx(math.log(2 * math.e + 2), rel=1e-6)
    # temperature 2: 2 * ln(exp((1 + ln 2) / 2) + 1 + 1) = 2 * ln(sqrt(2e) + 2)
    assert importance_sampled_logsumexp(*args, temperature=2.0).item() == pytest.approx(
        2 * math.log(math.sqrt(2 * math.e) + 2), rel=1e-6
    )


def test_importance_sampled_logsumexp_matches_direct_sum():
    g = torch.Generator().manual_seed(0)
    c, n, b, d, temp = 2, 3, 4, 2, 0.7
    q_rand, q_cur, q_next = (torch.randn(c, n, b, generator=g, dtype=torch.float64) for _ in range(3))
    lp_cur, lp_next = (torch.randn(n, b, generator=g, dtype=torch.float64) for _ in range(2))
    got = importance_sampled_logsumexp(q_rand, q_cur, q_next, lp_cur, lp_next, d, temp)
    for i in range(c):
        for j in range(b):
            terms = [q_rand[i, k, j] - d * math.log(0.5) for k in range(n)]
            terms += [q_cur[i, k, j] - lp_cur[k, j] for k in range(n)]
            terms += [q_next[i, k, j] - lp_next[k, j] for k in range(n)]
            direct = temp * math.log(sum(math.exp(float(t) / temp) for t in terms))
            assert got[i, j].item() == pytest.approx(direct, rel=1e-12)


def test_conservative_gap_and_max_backup():
    # gap = mean_b(ood - Q_data): ([3, 1] - [1, 2]) = [2, -1] -> 0.5 ; second critic [0, 0] -> 0
    assert conservative_gap(T([[3.0, 1.0], [1.0, 2.0]]), T([[1.0, 2.0], [1.0, 2.0]])).tolist() == [0.5, 0.0]
    # max over N candidates per state: column 0 -> 3 (candidate 1, log pi -3), column 1 -> 5 (candidate 0, log pi -2)
    q, lp = max_backup(T([[1.0, 5.0], [3.0, 2.0]]), T([[-1.0, -2.0], [-3.0, -4.0]]))
    assert q.tolist() == [3.0, 5.0] and lp.tolist() == [-3.0, -2.0]


def test_entropy_temperature_loss():
    # -(log_alpha * mean(log_pi + target)) = -(0.5 * mean([-1 - 2, -3 - 2])) = -(0.5 * -4) = 2
    log_alpha = T(0.5, requires_grad=True)
    loss = entropy_temperature_loss(log_alpha, T([-1.0, -3.0]), target_entropy=-2.0)
    assert loss.item() == pytest.approx(2.0)
    loss.backward()  # d/d log_alpha = 4 > 0: entropy (~2) is above target (-2), so alpha goes down
    assert log_alpha.grad.item() == pytest.approx(4.0)


def test_lagrange_penalty_and_multiplier_loss():
    algo = CQL(CQLConfig(hidden_dims=[8], lagrange=True, cql_alpha=5.0, target_action_gap=1.0), 3, 2)
    # log alpha' = 1 at init -> alpha' = e; gaps [2, 1] vs target 1: penalty = e * 5 * [1, 0]
    penalty, mult_loss, alpha_prime = algo._penalty(T([2.0, 1.0], requires_grad=True))
    assert alpha_prime.item() == pytest.approx(math.e)
    assert penalty.tolist() == pytest.approx([5 * math.e, 0.0])
    # multiplier loss = -mean(alpha' * 5 * [1, 0]) = -2.5 e; its gradient in log alpha' is also -2.5 e:
    # a gap above target makes alpha' grow
    assert mult_loss.item() == pytest.approx(-2.5 * math.e)
    mult_loss.backward()
    assert algo.log_alpha_prime.grad.item() == pytest.approx(-2.5 * math.e)
    # without lagrange: plain cql_alpha * gap
    plain = CQL(CQLConfig(hidden_dims=[8], cql_alpha=5.0), 3, 2)._penalty(T([2.0, 1.0]))[0]
    assert plain.tolist() == [10.0, 5.0]


# -- Cal-QL -------------------------------------------------------------------------------------
def test_calql_bound_lifts_exactly_where_q_below_reference():
    # Q (C=1, N=2, B=3), V_ref per state [2, 4, 2]:
    # candidate 0: [1, 5, 2] -> [max(1,2)=2, 5, 2 (tie: not lifted)]; candidate 1: [3, 2, 2] -> [3, max(2,4)=4, 2]
    q = T([[[1.0, 5.0, 2.0], [3.0, 2.0, 2.0]]], requires_grad=True)
    bounded, lifted = calql_bound(q, T([2.0, 4.0, 2.0]))
    assert bounded.tolist() == [[[2.0, 5.0, 2.0], [3.0, 4.0, 2.0]]]
    assert lifted.tolist() == [[[True, False, False], [False, True, False]]]
    bounded.sum().backward()  # a lifted value is a constant: no push-down gradient reaches Q there
    assert q.grad[lifted].tolist() == [0.0, 0.0]
    assert q.grad[0, 0, 1].item() == 1.0


def test_calql_bound_rate_over_current_and_next_candidates():
    algo = CalQL(CalQLConfig(hidden_dims=[8]), 3, 2)
    batch = Batch(
        observations=torch.zeros(3, 3),
        actions=torch.zeros(3, 2),
        rewards=torch.zeros(3),
        next_observations=torch.zeros(3, 3),
        terminals=torch.zeros(3),
        mc_returns=T([2.0, 4.0, 2.0]),
    )
    q_cur = T([[[1.0, 5.0, 2.0], [3.0, 2.0, 2.0]]])  # lifted: 2 of 6
    q_next = T([[[0.0, 0.0, 0.0], [9.0, 9.0, 9.0]]])  # lifted: 3 of 6
    cur, nxt, info = algo.bound_policy_q(q_cur, q_next, batch)
    assert info["bound_rate"].item() == pytest.approx(5 / 12)
    assert nxt.tolist() == [[[2.0, 4.0, 2.0], [9.0, 9.0, 9.0]]]
    # plain CQL leaves both untouched and logs nothing
    assert CQL.bound_policy_q(algo, q_cur, q_next, batch) == (q_cur, q_next, {})


def _tiny_batch(b: int, mc: float) -> Batch:
    g = torch.Generator().manual_seed(3)
    return Batch(
        torch.randn(b, 3, generator=g),
        torch.rand(b, 2, generator=g) * 2 - 1,
        torch.randn(b, generator=g),
        torch.randn(b, 3, generator=g),
        torch.zeros(b),
        torch.full((b,), mc),
    )


def test_calql_critic_loss_equals_cql_when_bound_inactive_and_rate_one_when_active():
    torch.manual_seed(0)
    calql = CalQL(CalQLConfig(hidden_dims=[16]), 3, 2)
    cql = CQL(CQLConfig(hidden_dims=[16], max_target_backup=True), 3, 2)
    cql.load_state_dict(calql.state_dict())
    alpha = torch.ones(())
    noise = calql.update_noise(8)
    loss_calql, _, info = calql._critic_loss(_tiny_batch(8, -1e9), alpha, noise)
    loss_cql, _, _ = cql._critic_loss(_tiny_batch(8, -1e9), alpha, noise)
    assert info["bound_rate"].item() == 0.0 and torch.equal(loss_calql, loss_cql)
    _, _, info = calql._critic_loss(_tiny_batch(8, 1e3), alpha, noise)
    assert info["bound_rate"].item() == 1.0


# -- BCQ ----------------------------------------------------------------------------------------
def test_vae_elbo_by_hand():
    # recon [1, -1] vs action [0, 0]: MSE = (1 + 1) / 2 = 1
    # mu [1, 0], log_std [0, 0]: KL terms -0.5 * (1 + 0 - mu^2 - 1) = [0.5, 0] -> mean 0.25
    # loss = 1 + 0.5 * 0.25 = 1.125
    assert vae_loss(T([[1.0, -1.0]]), T([[0.0, 0.0]]), T([[1.0, 0.0]]), T([[0.0, 0.0]])).item() == pytest.approx(1.125)
    # perfect reconstruction, mu 0, std 2 (log_std ln 2): KL = 0.5 * (std^2 - 1 - ln std^2) = 0.5 * (3 - 1.386294)
    kl = 0.5 * (3.0 - math.log(4.0))
    got = vae_loss(T([[0.3]]), T([[0.3]]), T([[0.0]]), T([[math.log(2.0)]]), kl_weight=0.5).item()
    assert got == pytest.approx(0.5 * kl, rel=1e-6)


def test_soft_clipped_double_q_target():
    # q (C=2, N=2, B=2). State 0: Q1 = [1, 4], Q2 = [3, 2] over candidates:
    #   cand 0: 0.75 * min(1, 3) + 0.25 * max(1, 3) = 0.75 + 0.75 = 1.5
    #   cand 1: 0.75 * 2 + 0.25 * 4 = 2.5          -> max over candidates 2.5
    # State 1: Q1 = [0, 0], Q2 = [-4, 4]: cand 0: 0.75 * -4 + 0 = -3; cand 1: 0 + 0.25 * 4 = 1 -> 1
    q = T([[[1.0, 0.0], [4.0, 0.0]], [[3.0, -4.0], [2.0, 4.0]]])
    assert soft_clipped_double_q(q, 0.75).tolist() == [2.5, 1.0]
    # lambda = 1 is clipped double-Q (min), lambda = 0 the optimistic max
    assert soft_clipped_double_q(q, 1.0).tolist() == [2.0, 0.0]
    assert soft_clipped_double_q(q, 0.0).tolist() == [4.0, 4.0]


def test_bcq_policy_is_deterministic_argmax_over_fixed_latents():
    z = eval_latents(10, 4, 0.5)
    assert torch.equal(z, eval_latents(10, 4, 0.5)) and torch.equal(z[0], torch.zeros(4)) and z.abs().max() <= 0.5
    torch.manual_seed(0)
    algo = BCQ(BCQConfig(hidden_dims=[16], vae_hidden_dims=[16], eval_candidates=10), 3, 2)
    policy = algo.policy()
    assert isinstance(policy, BCQPolicy)
    obs = torch.randn(5, 3)
    a1, a2 = policy(obs), policy(obs)
    assert torch.equal(a1, a2) and a1.shape == (5, 2) and a1.abs().max() <= 1.0
    # the chosen action is the candidate with the highest Q1, state by state
    for i in range(5):
        o = obs[i : i + 1].expand(10, 3)
        cands = algo.actor(o, algo.vae.decoder(o, z))
        best = algo.critic(o, cands)[0].argmax()
        assert torch.allclose(a1[i], cands[best], atol=1e-6)


def test_bcq_policy_is_the_argmax_of_q1_over_perturbed_samples():
    """The paper's selection: n = 10 perturbed decodings of fixed latents, the one of highest Q1, row by row."""
    torch.manual_seed(0)
    algo = BCQ(BCQConfig(hidden_dims=[16], vae_hidden_dims=[16]), 3, 2)
    assert algo.eval_latents.shape == (10, 4) and torch.equal(algo.eval_latents[0], torch.zeros(4))
    obs = torch.randn(5, 3)
    got = algo.policy()(obs)
    for i in range(5):
        o = obs[i].expand(10, 3)
        candidates = algo.actor(o, algo.vae.decoder(o, algo.eval_latents))
        best = algo.critic(o, candidates)[0].argmax()
        torch.testing.assert_close(got[i], candidates[best])
    one = BCQ(BCQConfig(hidden_dims=[16], vae_hidden_dims=[16], eval_candidates=1), 3, 2)  # the decoder mean
    torch.testing.assert_close(one.policy()(obs), one.actor(obs, one.vae.decoder(obs, torch.zeros(5, 4))))


# -- TD3+BC -------------------------------------------------------------------------------------
def test_td3bc_lambda_normalisation():
    # Q = [1, -3]: mean|Q| = 2 -> lambda = 2.5 / 2 = 1.25; -lambda * mean Q = -1.25 * -1 = 1.25
    # BC: pi [0.5, 0] vs a [0, 0] -> MSE 0.125; loss = 1.375
    q = T([1.0, -3.0], requires_grad=True)
    loss, lam = td3bc_actor_loss(q, T([[0.5], [0.0]]), T([[0.0], [0.0]]), alpha=2.5)
    assert lam.item() == pytest.approx(1.25) and loss.item() == pytest.approx(1.375)
    loss.backward()  # lambda is a constant: dL/dQ = -lambda / B = -0.625 for both entries
    assert q.grad.tolist() == pytest.approx([-0.625, -0.625])
    # rescaling Q by 100 leaves the Q term unchanged (the point of the normalisation)
    loss100, _ = td3bc_actor_loss(100 * q.detach(), T([[0.5], [0.0]]), T([[0.0], [0.0]]), alpha=2.5)
    assert loss100.item() == pytest.approx(1.375)


def test_td3_target_smoothing_noise_is_clipped():
    torch.manual_seed(0)
    a = smoothed_target_action(torch.zeros(1000, 2), torch.randn(1000, 2), noise_std=100.0, noise_clip=0.5)
    assert a.abs().max().item() == 0.5
    assert smoothed_target_action(torch.full((100, 1), 0.9), torch.randn(100, 1), 100.0, 0.5).max().item() == 1.0


def test_logged_actions_at_a_bound_are_clipped_like_the_official_code():
    """A saturated logged action is scored as +-0.999 (official clip_action), not as atanh(1 - 1e-6) = 7.3,
    which would dominate a likelihood fit on rate-limited logs."""
    from robo_offline.algos.nets import LOGGED_ACTION_CLIP, TanhGaussianActor

    torch.manual_seed(0)
    actor = TanhGaussianActor(3, 2, hidden=(8,))
    obs = torch.randn(4, 3)
    at_bound = torch.tensor([[1.0, -1.0]]).expand(4, 2)
    clipped = at_bound * LOGGED_ACTION_CLIP
    assert LOGGED_ACTION_CLIP == 0.999
    assert torch.allclose(actor.log_prob(obs, at_bound), actor.log_prob(obs, clipped))
    assert torch.isfinite(actor.log_prob(obs, at_bound)).all()


def test_cql_scales_sparse_rewards_as_the_official_antmaze_runs_unless_told():
    T = torch.tensor
    algo = CQL(CQLConfig(hidden_dims=[8]), 3, 2)
    assert algo.reward_transform(T([0.0, 50.0]), horizon=100, sparse=True) == (10.0, -5.0)  # success: +-5 per step
    assert algo.reward_transform(T([0.0, 50.0]), horizon=100, sparse=False) == (1.0, 0.0)
    mine = CQL(CQLConfig(hidden_dims=[8], reward_scale=2.0, reward_bias=0.0), 3, 2)
    assert mine.reward_transform(T([0.0, 50.0]), horizon=100, sparse=True) == (2.0, 0.0)
