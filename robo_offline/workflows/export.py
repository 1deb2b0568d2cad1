"""`robo-offline export RUN_DIR`: a run's checkpoint -> one deployable policy file per format.

Rebuilds the algorithm's deterministic policy from the checkpoint, takes the normaliser and
action bounds the run trained with and the run's safety config, and hands them to
`deploy.export_policy`, which writes, reloads and parity-checks each file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from deploy.export import EXPORT_FORMATS, export_policy
from robo_offline import config as config_lib
from robo_offline.algos import Algorithm, algorithm_class
from robo_offline.data import DatasetError, load_dataset
from robo_offline.training.checkpoint import LAST, file_sha256, load_checkpoint
from robo_offline.workflows.context import checkpoint_units
from sim.envs import make_env
from sim.model_limits import with_model_limits

N_CHECK = 1000  # parity observations: half from the dataset, half random around its statistics


def load_run_policy(run_dir: Path, checkpoint: Path | None = None) -> tuple[Algorithm, dict, object]:
    """The algorithm (weights loaded, eval mode, CPU), its checkpoint and its run config."""
    cfg = config_lib.load_saved(run_dir / "config.yaml")
    ckpt_path = checkpoint or run_dir / "checkpoints" / LAST
    state = load_checkpoint(ckpt_path, "cpu")
    algo = algorithm_class(state["algo_name"])(config_lib.to_object(cfg).algo, state["obs_dim"], state["act_dim"])
    algo.load_state_dict(state["algo"]["modules"])
    return algo.eval(), state, cfg


def check_observations(cfg, mean: torch.Tensor, std: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Observations the exported file must reproduce: logged ones (if the dataset is present) and random ones."""
    g = torch.Generator().manual_seed(seed)
    random = mean + std * 3.0 * torch.randn(N_CHECK, mean.numel(), generator=g)
    try:
        data = load_dataset(
            cfg.task.dataset,
            format=cfg.task.format,
            obs_keys=cfg.task.obs_keys,
            nonfinite="drop",
            check_action_bounds=False,
        )
    except DatasetError:
        return random
    idx = torch.randint(0, data.n_transitions, (N_CHECK // 2,), generator=g)
    return torch.cat([data.observations[idx], random[: N_CHECK - N_CHECK // 2]])


def export_run(
    run_dir: str | Path,
    formats: tuple[str, ...] = EXPORT_FORMATS,
    out: str | Path | None = None,
    checkpoint: Path | None = None,
) -> dict[str, Path]:
    """Export a run's policy; returns {format: path}. Fails (and writes nothing) if parity fails."""
    run_dir = Path(run_dir)
    algo, state, cfg = load_run_policy(run_dir, checkpoint)
    ckpt_file = checkpoint or run_dir / "checkpoints" / LAST
    units = checkpoint_units(state, ckpt_file)
    env = make_env(state["env_id"])
    safety = with_model_limits(config_lib.to_object(cfg).safety, env)
    env.close()
    last_action = bool(state.get("last_action_input", False))  # absent from checkpoints before the option
    obs_dim = units.obs_dim - (units.act_dim if last_action else 0)
    metadata = {
        "algorithm": state["algo_name"],
        "reward": state.get("reward", "env"),
        "env_id": state["env_id"],
        "training_step": int(state["step"]),
        "training_config": config_lib.as_dict(cfg),
        "source_checkpoint": str(ckpt_file),
        "source_checkpoint_sha256": file_sha256(Path(ckpt_file)),
        # the file's input: the plain observation (a last action the policy observes is appended inside)
        "observation_layout": [p for p in state.get("observation_layout", []) if p["name"] != "last_action"],
    }
    return export_policy(
        algo.policy(),
        units,
        safety=safety,
        metadata=metadata,
        path=Path(out) if out else run_dir / "export" / "policy",
        check_observations=check_observations(cfg, units.obs_mean[:obs_dim], units.obs_std[:obs_dim]),
        formats=formats,
        last_action_input=last_action,
    )


__all__ = ["export_run", "load_run_policy"]
