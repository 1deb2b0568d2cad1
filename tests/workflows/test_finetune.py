"""Online fine-tuning: MC returns at episode end, batch mixing, filtered actions stored, exact resume.

Runs on InvertedPendulum-v5 with random demos and tiny networks so the whole file stays fast.
"""

from __future__ import annotations

import math
import os
import signal

import gymnasium as gym
import numpy as np
import pytest
import torch
from builders import PENDULUM, tiny_run

from deploy import load_policy
from deploy.safety import SafetyConfig
from deploy.units import EnvUnits
from robo_offline import config as C
from robo_offline.algos.convert import DISTILLED_LOG_STD, convert, converted_config
from robo_offline.data import TransitionDataset
from robo_offline.data.replay import MixedSampler, ReplayBuffer
from robo_offline.training.checkpoint import load_checkpoint
from robo_offline.training.collector import OnlineCollector
from robo_offline.training.interrupt import TrainingInterrupted
from robo_offline.workflows.export import export_run
from robo_offline.workflows.finetune import finetune, online_run_config
from robo_offline.workflows.pretrain import pretrain
from sim.envs import make_vector_env
from sim.wrappers import SafetyFilterWrapper

ENV = PENDULUM


def _tiny(tmp, extra=(), algo=("algo=calql", "algo.n_actions=2")):
    return tiny_run(f"{tmp}/demos", *extra, algo=algo)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ft")
    ctx, _ = pretrain(C.compose(_tiny(tmp, [f"run_dir={tmp}/offline"])))
    return tmp, ctx.run_dir


# -- replay buffer and mixing ---------------------------------------------------------------------
def test_online_episode_mc_returns_are_computed_at_its_end_terminal_and_timeout():
    buf = ReplayBuffer(100, obs_dim=1, act_dim=1, gamma=0.5)
    z = np.zeros((3, 1), np.float32)
    # terminal episode: rewards 1, 2, 4 -> G = [1 + .5*2 + .25*4, 2 + .5*4, 4] = [3, 4, 4]
    mc = buf.add_episode(z, z, np.array([1, 2, 4], np.float32), z, np.array([0, 0, 1], np.float32))
    np.testing.assert_allclose(mc, [3.0, 4.0, 4.0])
    # timed-out episode (no terminal): the sum stops at the cut all the same -> [2 + .5*2, 2]
    mc = buf.add_episode(z[:2], z[:2], np.array([2, 2], np.float32), z[:2], np.zeros(2, np.float32))
    np.testing.assert_allclose(mc, [3.0, 2.0])
    np.testing.assert_allclose(buf.tensors["mc_returns"][:5].numpy(), [3, 4, 4, 3, 2])
    np.testing.assert_allclose(buf.tensors["terminals"][:5].numpy(), [0, 0, 1, 0, 0])
    assert buf.size == 5 and buf.episodes == 2


def test_buffer_is_a_ring_over_capacity():
    buf = ReplayBuffer(4, obs_dim=1, act_dim=1, gamma=0.9)
    for k in range(3):
        x = np.full((2, 1), k, np.float32)
        buf.add_episode(x, x, np.ones(2, np.float32), x, np.zeros(2, np.float32))
    assert buf.size == 4 and buf.ptr == 2
    assert sorted(buf.tensors["observations"][:, 0].tolist()) == [1, 1, 2, 2]


def test_mixing_ratio_is_honoured():
    n = 50
    offline = TransitionDataset(
        torch.zeros(n, 1),
        torch.zeros(n, 1),
        torch.zeros(n),
        torch.zeros(n, 1),
        torch.zeros(n),
        torch.zeros(n),
        torch.zeros(n, dtype=torch.long),
        torch.zeros(n),
    )
    online = ReplayBuffer(100, obs_dim=1, act_dim=1, gamma=0.9)
    g = torch.Generator().manual_seed(0)
    assert MixedSampler(offline, online, 40, 0.25, g)().observations.sum() == 0  # no online data yet: all offline
    ones = np.ones((10, 1), np.float32)
    online.add_episode(ones, ones, np.ones(10, np.float32), ones, np.zeros(10, np.float32))
    for fraction, expected in [(0.25, 10), (0.5, 20), (0.0, 0), (1.0, 40)]:
        batch = MixedSampler(offline, online, 40, fraction, g)()
        assert batch.observations.shape == (40, 1)
        assert int(batch.observations.sum()) == expected


# -- collection through the safety filter ----------------------------------------------------------
def test_collector_stores_the_filtered_action_not_the_raw_one():
    tight = SafetyConfig(action_low=[-0.1], action_high=[0.1])
    envs = make_vector_env(
        ENV,
        2,
        seed=0,
        wrappers=[lambda e: SafetyFilterWrapper(e, tight)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    buf = ReplayBuffer(5000, 4, 1, 0.99)
    units = EnvUnits.identity(4, [-3.0], [3.0])

    def always_max(obs: torch.Tensor) -> torch.Tensor:
        return torch.ones(obs.shape[0], 1)  # raw policy action: +3 in env units

    collector = OnlineCollector(envs, buf, units, always_max, torch.device("cpu"), seed=0)
    while buf.episodes < 3:
        collector.step()
    stored = units.numpy.action_to_env(buf.tensors["actions"][: buf.size].numpy())
    np.testing.assert_allclose(stored, 0.1, atol=1e-5)  # the executed (clamped) action, never the raw +3
    assert collector.interventions.get("clamp", 0) >= buf.size
    envs.close()


# -- the loop ---------------------------------------------------------------------------------------
def _ft_cfg(tmp, source, name, extra=()):
    return online_run_config(
        source,
        [
            "finetune.env_steps=80",
            "finetune.num_envs=2",
            "finetune.eval_every=40",
            "finetune.checkpoint_every=40",
            "train.log_every=20",
            f"run_dir={tmp}/{name}",
            *extra,
        ],
    )


def test_finetune_logs_offline_point_calibration_and_bound_rate(source_run):
    tmp, source = source_run
    ctx, result = finetune(_ft_cfg(tmp, source, "ft_basic"))
    evals = (ctx.run_dir / "eval.csv").read_text().splitlines()
    assert evals[0].startswith("step,env_steps") and evals[1].startswith("0,0,")  # offline score first
    assert {"q_estimate", "mc_return", "mean_return"} <= result.keys() and math.isfinite(result["q_estimate"])
    header = (ctx.run_dir / "train.csv").read_text().splitlines()[0]
    assert "bound_rate" in header and "env_steps" in header and "interventions_clamp" in header
    assert (ctx.run_dir / "learning_curves.png").is_file()


def test_bcq_checkpoint_is_distilled_into_calql(tmp_path):
    bcq = ("algo=bcq", "algo.n_candidates=2", "algo.vae_hidden_dims=[32,32]")
    ctx, _ = pretrain(C.compose(_tiny(tmp_path, [f"run_dir={tmp_path}/bcq"], algo=bcq)))
    teacher = ctx.algo.policy()
    obs = ctx.dataset.observations[:256]
    target_cfg = converted_config(ctx.algo.cfg, "calql")
    assert target_cfg.hidden_dims == [32, 32] and target_cfg.name == "calql"
    calql = convert(ctx.algo, target_cfg, ctx.dataset.observations, steps=0)
    before = (calql.policy()(obs) - teacher(obs)).pow(2).mean()
    calql = convert(ctx.algo, target_cfg, ctx.dataset.observations, steps=300)
    after = (calql.policy()(obs) - teacher(obs)).pow(2).mean()
    assert after < 0.25 * before  # the greedy BCQ policy was distilled into the tanh-Gaussian actor
    log_std = calql.actor.heads(obs)[1]
    assert log_std.mean().item() == pytest.approx(DISTILLED_LOG_STD, abs=0.3)  # not collapsed to the clamp (-5)
    for a, b in zip(calql.critic.parameters(), ctx.algo.critic.parameters()):
        assert torch.equal(a, b)  # BCQ's twin critic carries over
    ft_ctx, result = finetune(_ft_cfg(tmp_path, ctx.run_dir, "ft_bcq", ["finetune.distill_steps=20"]))
    assert ft_ctx.algo.cfg.name == "calql" and C.load_saved(ft_ctx.run_dir / "config.yaml").algo.name == "calql"
    assert math.isfinite(result["mean_return"])


class Interrupt(Exception):
    pass


def test_killed_run_resumes_from_the_same_step_with_the_same_buffer(source_run, monkeypatch):
    """Killed mid-episode at step 40: the resumed run ends bit-identical to one that never stopped."""
    tmp, source = source_run
    straight, _ = finetune(_ft_cfg(tmp, source, "ft_straight"))
    cfg = _ft_cfg(tmp, source, "ft_resume")
    import robo_offline.training.trainer as trainer_mod

    real_save = trainer_mod.Trainer.save

    def save_then_die(self, step):
        path = real_save(self, step)
        if step == 40:
            raise Interrupt
        return path

    monkeypatch.setattr(trainer_mod.Trainer, "save", save_then_die)
    with pytest.raises(Interrupt):
        finetune(cfg)
    monkeypatch.setattr(trainer_mod.Trainer, "save", real_save)
    state = load_checkpoint(tmp / "ft_resume" / "checkpoints")
    assert state["step"] == 40
    saved_size = state["buffer"]["size"]
    assert saved_size > 0 and state["collector"]["env_steps"] >= 40
    assert any(p["rewards"] for p in state["collector"]["episodes"]["pending"])  # episodes in progress at the kill

    resumed_cfg = C.load_saved(tmp / "ft_resume" / "config.yaml")
    starts = []
    real_fit = trainer_mod.Trainer.fit
    monkeypatch.setattr(
        trainer_mod.Trainer,
        "fit",
        lambda self, start_step=0: starts.append((start_step, self.sample.online.size)) or real_fit(self, start_step),
    )
    resumed, _ = finetune(resumed_cfg, resume=tmp / "ft_resume")
    assert starts == [(40, saved_size)]
    assert load_checkpoint(tmp / "ft_resume" / "checkpoints")["step"] == 80
    for (name, a), b in zip(straight.algo.state_dict().items(), resumed.algo.state_dict().values()):
        assert torch.equal(a, b), name
    end_straight = load_checkpoint(tmp / "ft_straight" / "checkpoints")
    end_resumed = load_checkpoint(tmp / "ft_resume" / "checkpoints")
    assert end_straight["buffer"]["size"] == end_resumed["buffer"]["size"]
    assert end_straight["collector"]["episode_returns"] == end_resumed["collector"]["episode_returns"]


def test_sigterm_mid_episode_checkpoints_that_step_and_the_resume_is_bit_identical(source_run, monkeypatch):
    """Preempted (SIGTERM) between checkpoints, with episodes in progress: nothing since the last checkpoint is lost."""
    tmp, source = source_run
    straight, _ = finetune(_ft_cfg(tmp, source, "ft_straight_sig"))
    real_step = OnlineCollector.step

    def step_then_preempted(self):
        real_step(self)
        if self.env_steps == 30:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(OnlineCollector, "step", step_then_preempted)
    with pytest.raises(TrainingInterrupted) as err:
        finetune(_ft_cfg(tmp, source, "ft_sigterm"))
    monkeypatch.setattr(OnlineCollector, "step", real_step)
    assert err.value.signame == "SIGTERM" and 0 < err.value.step < 40  # checkpoints are every 40 updates
    assert load_checkpoint(tmp / "ft_sigterm" / "checkpoints")["step"] == err.value.step
    resumed, _ = finetune(C.load_saved(tmp / "ft_sigterm" / "config.yaml"), resume=tmp / "ft_sigterm")
    for (name, a), b in zip(straight.algo.state_dict().items(), resumed.algo.state_dict().values()):
        assert torch.equal(a, b), name


def test_converted_run_resumes_as_the_converted_algorithm(tmp_path):
    ctx, _ = pretrain(C.compose(_tiny(tmp_path, [f"run_dir={tmp_path}/bc"], algo=("algo=bc",))))
    cfg = _ft_cfg(tmp_path, ctx.run_dir, "ft_bc", ["finetune.distill_steps=5", "finetune.env_steps=40"])
    finetune(cfg)
    again = C.load_saved(tmp_path / "ft_bc" / "config.yaml", ["finetune.env_steps=80"])
    ft_ctx, _ = finetune(again, resume=tmp_path / "ft_bc")
    assert ft_ctx.algo.cfg.name == "calql"
    assert load_checkpoint(tmp_path / "ft_bc" / "checkpoints")["step"] == 80


def test_iql_hand_over_makes_no_learning_rate_step(tmp_path):
    """IQL's offline cosine ends near lr 0; online it continues the schedule (CORL's), never jumping to 3e-4."""
    ctx, _ = pretrain(C.compose(_tiny(tmp_path, [f"run_dir={tmp_path}/iql"], algo=("algo=iql",))))
    final_lr = ctx.algo.optimizers["actor"].param_groups[0]["lr"]
    assert final_lr < 1e-9  # the schedule ran its course
    offline_actor = [p.detach().clone() for p in ctx.algo.actor.parameters()]
    seen = []
    real_update = type(ctx.algo).update

    def spy(algo, batch):
        seen.append(algo.optimizers["actor"].param_groups[0]["lr"])
        return real_update(algo, batch)

    import robo_offline.algos.iql as iql_module

    original = iql_module.IQL.update
    iql_module.IQL.update = spy
    try:
        ft_ctx, _ = finetune(_ft_cfg(tmp_path, ctx.run_dir, "ft_iql", ["finetune.env_steps=40"]))
    finally:
        iql_module.IQL.update = original
    assert ft_ctx.algo.cfg.name == "iql" and "actor" in ft_ctx.algo.schedulers
    assert seen[0] == pytest.approx(final_lr, abs=1e-12)  # no step at the hand-over
    assert all(b >= a for a, b in zip(seen, seen[1:])) and seen[-1] > seen[0]  # the cosine climbs back
    assert seen[1] < 1e-2 * ft_ctx.algo.cfg.actor_lr  # a slow climb, not a jump
    assert any(not torch.equal(a, b) for a, b in zip(offline_actor, ft_ctx.algo.actor.parameters()))
    assert load_checkpoint(tmp_path / "ft_iql" / "checkpoints")["algo"]["schedulers"]["actor"]["T_max"] == 60


def test_fine_tuning_honours_a_learning_rate_override_and_refuses_an_architecture_change(tmp_path):
    ctx, _ = pretrain(C.compose(_tiny(tmp_path, [f"run_dir={tmp_path}/cal"])))
    ft_ctx, _ = finetune(_ft_cfg(tmp_path, ctx.run_dir, "ft_lr", ["finetune.env_steps=20", "algo.actor_lr=1e-5"]))
    assert ft_ctx.algo.optimizers["actor"].param_groups[0]["lr"] == pytest.approx(1e-5)  # not the offline 1e-4
    assert ft_ctx.algo.optimizers["critic"].param_groups[0]["lr"] == pytest.approx(3e-4)
    with pytest.raises(C.ConfigError, match=r"hidden_dims"):
        finetune(_ft_cfg(tmp_path, ctx.run_dir, "ft_arch", ["finetune.env_steps=20", "algo.hidden_dims=[16,16]"]))


def test_proportional_mixing_samples_uniformly_from_offline_and_online_rows():
    n = 300
    offline = TransitionDataset(
        torch.zeros(n, 1),
        torch.zeros(n, 1),
        torch.zeros(n),
        torch.zeros(n, 1),
        torch.zeros(n),
        torch.zeros(n),
        torch.zeros(n, dtype=torch.long),
        torch.zeros(n),
    )
    online = ReplayBuffer(200, obs_dim=1, act_dim=1, gamma=0.9)
    ones = np.ones((100, 1), np.float32)
    online.add_episode(ones, ones, np.ones(100, np.float32), ones, np.zeros(100, np.float32))
    sampler = MixedSampler(offline, online, 4000, "proportional", torch.Generator().manual_seed(0))
    batch = sampler()
    share = float(batch.observations.mean())
    assert share == pytest.approx(100 / 400, abs=0.03)  # 100 online rows of 400 in all
    assert torch.equal(batch.observations, batch.rewards.unsqueeze(1))  # whole rows, not mixed columns


def test_online_episodes_cut_by_the_time_limit_get_the_floor_tail():
    buf = ReplayBuffer(100, obs_dim=1, act_dim=1, gamma=0.5, reward_floor=-1.0)
    z = np.zeros((2, 1), np.float32)
    np.testing.assert_allclose(buf.add_episode(z, z, -np.ones(2, np.float32), z, np.zeros(2, np.float32)), [-2, -2])
    np.testing.assert_allclose(
        buf.add_episode(z, z, -np.ones(2, np.float32), z, np.array([0, 1], np.float32)), [-1.5, -1.0]
    )


def test_calql_refuses_negative_rewards_without_a_floor_and_accepts_a_declared_one(tmp_path):
    # Pusher: every episode is cut by its 100-step time limit (random torques, 30 episodes)
    cfg = _tiny(
        tmp_path,
        [
            "task.env_id=Pusher-v5",
            "task.reward=builders:minus_one",
            "task.reward_floor=null",
            f"run_dir={tmp_path}/neg",
        ],
    )
    with pytest.raises(C.ConfigError, match="task.reward_floor"):
        pretrain(C.compose(cfg))
    ctx, _ = pretrain(C.compose([*cfg, "task.reward_floor=-1", f"run_dir={tmp_path}/floor"]))
    assert ctx.dataset.metadata["mc_lower_bound"] and ctx.dataset.metadata["reward"] == "builders:minus_one"
    assert float(ctx.dataset.rewards.max()) == -1.0
    cut = (ctx.dataset.timeouts > 0) & (ctx.dataset.terminals == 0)
    assert torch.allclose(ctx.dataset.mc_returns[cut], torch.tensor(-100.0))  # -1 / (1 - 0.99) at every cut


def test_last_action_runs_end_to_end_and_export(tmp_path):
    """The policy observes the last executed action offline (from the log), online (wrapper) and in the file."""
    ctx, _ = pretrain(C.compose(_tiny(tmp_path, ["task.observe_last_action=true", f"run_dir={tmp_path}/la"])))
    assert ctx.last_action and ctx.algo.obs_dim == 4 + 1 and ctx.dataset.obs_dim == 5
    ft_ctx, result = finetune(_ft_cfg(tmp_path, ctx.run_dir, "ft_la", ["finetune.env_steps=40"]))
    assert ft_ctx.last_action and math.isfinite(result["mean_return"])
    files = export_run(ft_ctx.run_dir, ("torchscript",))
    policy = load_policy(files["torchscript"])
    assert policy.metadata["observation_space"]["shape"] == [4]
    assert [p["name"] for p in policy.metadata["policy_input"]["parts"]] == ["observation", "last_action"]


def test_iql_converted_to_calql_keeps_its_reward_scale_and_the_users_overrides_through_a_resume(tmp_path):
    ctx, _ = pretrain(C.compose(_tiny(tmp_path, [f"run_dir={tmp_path}/iql"], algo=("algo=iql",))))
    scale = float(ctx.units.reward_scale)
    assert scale != 1.0  # dense rewards: IQL's horizon / return spread
    cfg = _ft_cfg(
        tmp_path,
        ctx.run_dir,
        "ft_conv",
        ["finetune.continue_as=calql", "finetune.distill_steps=5", "finetune.env_steps=40", "algo.tau=0.01"],
    )
    ft_ctx, _ = finetune(cfg)
    assert ft_ctx.algo.cfg.name == "calql" and ft_ctx.algo.cfg.tau == 0.01
    saved = C.load_saved(tmp_path / "ft_conv" / "config.yaml", ["finetune.env_steps=80"])
    assert saved.algo.reward_scale == pytest.approx(scale)
    resumed, _ = finetune(saved, resume=tmp_path / "ft_conv")  # the stored transform is checked: it matches
    assert float(resumed.units.reward_scale) == pytest.approx(scale)
    bad = C.load_saved(tmp_path / "ft_conv" / "config.yaml", ["finetune.env_steps=120", "algo.reward_scale=1.0"])
    with pytest.raises(C.ConfigError, match="reward_scale"):
        finetune(bad, resume=tmp_path / "ft_conv")
