"""EnvUnits is the one env <-> training transform: its formulas, its numpy view, its state, and that the
simulation path and the exported file compute the same env-unit action."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deploy import EnvPolicy, EnvUnits, export_policy, load_policy
from sim.envs import make_env
from sim.wrappers import LastActionObservation, SafetyFilterWrapper

OBS, ACT = 23, 7


def units() -> EnvUnits:
    g = torch.Generator().manual_seed(0)
    return EnvUnits(
        torch.randn(OBS, generator=g),
        torch.rand(OBS, generator=g) + 0.1,
        torch.linspace(-3.0, -1.0, ACT),
        torch.linspace(1.0, 2.0, ACT),
        reward_scale=2.5,
        reward_shift=-1.0,
    )


def test_formulas():
    u = units()
    obs = torch.randn(4, OBS)
    torch.testing.assert_close(u.obs(obs), (obs - u.obs_mean) / u.obs_std)
    low, high = torch.linspace(-3.0, -1.0, ACT), torch.linspace(1.0, 2.0, ACT)
    torch.testing.assert_close(u.action_to_env(-torch.ones(ACT)), low)
    torch.testing.assert_close(u.action_to_env(torch.ones(ACT)), high)
    torch.testing.assert_close(u.action_to_env(torch.full((ACT,), 5.0)), high)  # clamped to [-1, 1] first
    a = low + torch.rand(10, ACT) * (high - low)
    torch.testing.assert_close(u.action_to_env(u.action_to_unit(a)), a)
    assert u.action_to_unit(high + 1.0).max() == 1.0
    torch.testing.assert_close(u.reward(torch.tensor([0.0, 2.0])), torch.tensor([-1.0, 4.0]))
    assert torch.isnan(u.action_to_env(torch.full((ACT,), float("nan")))).all()  # for the filter's guard


def test_numpy_view_is_the_torch_transform():
    u = units()
    rng = np.random.default_rng(0)
    obs, act = rng.standard_normal((5, OBS)), rng.uniform(-1, 1, (5, ACT))
    for name, x in (("obs", obs), ("action_to_env", act), ("action_to_unit", act), ("reward", obs[:, 0])):
        got = getattr(u.numpy, name)(x)
        assert isinstance(got, np.ndarray) and got.dtype == np.float32
        np.testing.assert_array_equal(got, getattr(u, name)(torch.as_tensor(x, dtype=torch.float32)).numpy())


def test_state_round_trip_is_exact_and_names_what_is_missing():
    u = units()
    again = EnvUnits.from_state({k: v.clone() for k, v in u.state_dict().items()})
    for k, v in u.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    state = u.state_dict()
    del state["obs_std"]
    with pytest.raises(KeyError, match="obs_std"):
        EnvUnits.from_state(state)


def test_huge_bounds_do_not_overflow():
    u = EnvUnits.identity(1, [-3e38], [3e38])
    assert torch.isfinite(u.action_half_range).all()
    torch.testing.assert_close(u.action_to_env(torch.ones(1)), torch.tensor([3e38]))


@pytest.mark.parametrize("last_action", [False, True], ids=["obs", "obs+last-action"])
@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_simulation_path_and_exported_file_give_the_same_env_unit_action(tmp_path, pusher_safety, fmt, last_action):
    """What evaluation runs (EnvPolicy, then the env wrappers' filter and last-action observation) is what the
    exported file computes from the plain observation, its filter supplying the last action."""
    torch.manual_seed(0)
    width = OBS + (ACT if last_action else 0)
    core = nn.Sequential(nn.Linear(width, 32), nn.ReLU(), nn.Linear(32, ACT), nn.Tanh())
    u = EnvUnits(torch.randn(width) * 0.1, torch.rand(width) + 0.5, [-2.0] * ACT, [2.0] * ACT)
    files = export_policy(
        core,
        u,
        safety=pusher_safety,
        metadata={},
        path=tmp_path / "policy",
        check_observations=torch.randn(10, OBS),
        formats=[fmt],
        last_action_input=last_action,
    )
    exported = load_policy(files[fmt])
    assert exported.metadata["observation_space"]["shape"] == [OBS]
    assert [p["name"] for p in exported.metadata["policy_input"]["parts"]] == ["observation", "last_action"][
        : 1 + last_action
    ]

    sim_policy = EnvPolicy(core, u)
    env = SafetyFilterWrapper(make_env("Pusher-v5"), pusher_safety)
    env = LastActionObservation(env) if last_action else env
    obs, _ = env.reset(seed=0)
    exported.reset()
    for _ in range(30):
        raw = sim_policy.act(obs)  # env units, before the filter
        from_file = exported(obs[:OBS])
        obs, _, _, _, info = env.step(raw)
        np.testing.assert_allclose(info["executed_action"], from_file, atol=1e-5)  # after the filter
