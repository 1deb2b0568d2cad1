"""The main job: built-in demos -> offline pretraining -> online fine-tuning -> export -> one table.

`robo-offline main` (and `make demo`) runs it; every stage writes its own run directory, so any
stage can be re-run alone with the stage's command.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robo_offline import config as config_lib
from robo_offline.data import load_dataset
from robo_offline.datagen.builtin import ensure_task_data
from robo_offline.workflows.context import run_reward
from robo_offline.workflows.evaluate import evaluate_target
from robo_offline.workflows.export import export_run
from robo_offline.workflows.finetune import finetune, online_run_config
from robo_offline.workflows.pretrain import pretrain
from sim.rewards import RewardSpec
from sim.scores import normalized_score
from sim.threads import torch_threads
from sim.video import RenderError

MAIN_DEFAULTS = {"task": "arm", "algo": "calql"}  # the example robot (sim/assets/reach_arm.xml)
MAIN_BUDGET = config_lib.CONFIG_DIR / "main_job.yaml"
# CQL-family updates cost ~(3 n_actions + 1) critic passes: the demo samples 4 actions, not 10.
LIGHT_CONSERVATIVE = "algo.n_actions=4"


def demo_summary(path: str, env_id: str, reward: RewardSpec | None = None) -> list[dict[str, Any]]:
    """Success and return of the logged demos per quality level (from the log's own metadata), the return in
    `reward`'s terms where it relabels the log (then no normalised score: that is the env reward's scale)."""
    data = load_dataset(path, check_action_bounds=False)
    if reward is not None and reward.relabels:
        data = data.relabelled(reward, reward.name)
    returns = data.episode_returns().numpy()
    meta = data.metadata.get("file_metadata", {})
    quality = meta.get("episode_quality") or ["all"] * len(returns)
    success = data.metadata.get("episode_success") or [None] * len(returns)
    rows = []
    for level in dict.fromkeys(quality):
        idx = [i for i, q in enumerate(quality) if q == level]
        succ = [success[i] for i in idx if success[i] is not None]
        ret = float(np.mean(returns[idx]))
        score = None if reward is not None and reward.relabels else normalized_score(env_id, ret)
        rows.append(
            {
                "policy": f"demonstrator ({level})",
                "return": ret,
                "success": float(np.mean(succ)) if succ else None,
                "score": score,
            }
        )
    return rows


def _row(name: str, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "policy": name,
        "return": result.get("mean_return"),
        "success": result.get("success_rate"),
        "score": result.get("normalized_score"),
        "eval_seed": result.get("eval_seed"),
    }


def format_table(rows: list[dict[str, Any]], extra: dict[str, str]) -> str:
    def cell(v: Any, pct: bool = False) -> str:
        if v is None:
            return "n/a"
        return f"{v:.0%}" if pct else f"{v:.1f}"

    lines = ["| policy | success | return | normalised score |", "|---|---:|---:|---:|"]
    lines += [
        f"| {r['policy']} | {cell(r['success'], True)} | {cell(r['return'])} | {cell(r['score'])} |" for r in rows
    ]
    lines += [""] + [f"{k}: {v}" for k, v in extra.items()]
    return "\n".join(lines)


def run_main_job(overrides: Sequence[str] = (), config_files: Sequence[str] = ()) -> str:
    start = time.perf_counter()
    overrides = list(overrides)
    cfg = config_lib.compose(overrides, [MAIN_BUDGET, *config_files], defaults=MAIN_DEFAULTS)
    if "n_actions" in cfg.algo and not any(o.startswith("algo.n_actions=") for o in overrides):
        overrides.append(LIGHT_CONSERVATIVE)
        cfg = config_lib.compose(overrides, [MAIN_BUDGET, *config_files], defaults=MAIN_DEFAULTS)
    ensure_task_data(cfg.task, config_lib.to_object(cfg).safety)
    rows = demo_summary(cfg.task.dataset, cfg.task.env_id, run_reward(cfg))

    print("== baseline: behaviour cloning")
    bc_cfg = config_lib.compose(
        [o for o in overrides if not o.startswith("algo")] + ["algo=bc"],
        [MAIN_BUDGET, *config_files],
        defaults=MAIN_DEFAULTS,
    )
    rows.append(_row("offline bc", pretrain(bc_cfg)[1]))

    print(f"== offline pretraining: {cfg.algo.name} on {cfg.task.dataset}")
    offline_ctx, offline = pretrain(cfg)
    rows.append(_row(f"offline {cfg.algo.name}", offline))

    print(f"== online fine-tuning in {cfg.task.env_id}: {cfg.finetune.env_steps} env steps")
    ft_cfg = online_run_config(offline_ctx.run_dir, [o for o in overrides if o.split("=")[0] not in config_lib.GROUPS])
    ft_ctx, online = finetune(ft_cfg)
    rows.append(_row(f"fine-tuned {ft_ctx.algo.cfg.name}", online))

    print("== export (TorchScript + AOTInductor, parity-checked)")
    files = export_run(ft_ctx.run_dir)
    latency = measure_latency(files["torchscript"])
    video = _video(files["torchscript"], Path(ft_ctx.run_dir) / "finetuned.mp4")
    seeds = sorted({r["eval_seed"] for r in rows if r.get("eval_seed") is not None})
    episodes = cfg.task.eval_episodes
    table = format_table(
        rows,
        {
            "evaluation": f"{episodes} episodes per policy row, episode k seeded "
            + " / ".join(f"{s} + k" for s in seeds)
            + " (the same start states in every row)",
            "offline run": str(offline_ctx.run_dir),
            "fine-tuning run": str(ft_ctx.run_dir),
            "exported": ", ".join(str(p) for p in files.values()),
            "TorchScript latency (Python, 1 thread)": f"p50 {latency[0]:.0f} us, p99 {latency[1]:.0f} us",
            "video of the fine-tuned policy": video,
            "wall time": f"{time.perf_counter() - start:.0f} s",
        },
    )
    print("\n" + table)
    Path(ft_ctx.run_dir, "main_job.md").write_text(table + "\n")
    return table


def _video(policy_file: Path, out: Path, episodes: int = 2) -> str:
    """Render two evaluation episodes of the exported policy; where this machine cannot render, say why."""
    try:
        evaluate_target(policy_file, episodes=episodes, video=out)
    except RenderError as err:
        return f"not written ({err})"
    return str(out)


def measure_latency(path: Path, n: int = 2000) -> tuple[float, float]:
    """p50/p99 per-action latency (microseconds) of an exported file from Python, one thread."""
    import torch

    from deploy import load_policy

    with torch_threads(1):
        policy = load_policy(path)
        obs = torch.randn(n, policy.metadata["observation_space"]["shape"][0])
        times = []
        policy.reset()
        for o in obs:
            t0 = time.perf_counter_ns()
            policy.act(o)
            times.append((time.perf_counter_ns() - t0) / 1000)
        return float(np.percentile(times, 50)), float(np.percentile(times, 99))
