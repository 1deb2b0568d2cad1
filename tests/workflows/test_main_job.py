"""The main job end to end on a tiny budget: every policy row is evaluated on the same start states."""

from __future__ import annotations

from builders import tiny_run

import robo_offline.workflows.context as context
from robo_offline.workflows.main_job import run_main_job

# The main job's own defaults pick Cal-QL (and BC for the baseline row); only its budget is shrunk here.
TINY = tiny_run(
    "data/pendulum-random",
    "task.demos.episodes_per_quality=20",
    "task.eval_episodes=3",
    "train.steps=40",
    "train.eval_every=40",
    "train.checkpoint_every=40",
    "finetune.env_steps=40",
    "finetune.eval_every=40",
    "finetune.checkpoint_every=40",
    algo=("algo.n_actions=2",),
)


def test_main_job_rows_share_evaluation_seeds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the job writes runs/ and data/ where it is started
    calls = []
    real = context.evaluate

    def spy(behaviour, env_id, n_episodes, seed, **kwargs):
        calls.append((n_episodes, seed))
        return real(behaviour, env_id, n_episodes=n_episodes, seed=seed, **kwargs)

    monkeypatch.setattr(context, "evaluate", spy)
    table = run_main_job(TINY)
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| policy")]
    assert [r.split(" | ")[0] for r in rows] == [
        "| demonstrator (random)",
        "| offline bc",
        "| offline calql",
        "| fine-tuned calql",
    ]
    # BC, Cal-QL offline (final), fine-tuning's offline point and its final point: one seed set.
    assert len(calls) >= 4 and set(calls) == {(3, context.EVAL_SEED)}
    assert f"episode k seeded {context.EVAL_SEED} + k" in table
    run = next((tmp_path / "runs").glob("*-finetune-*"))
    assert (run / "export" / "policy.pt").is_file() and (run / "export" / "policy.pt2").is_file()
    assert (run / "main_job.md").read_text().strip() == table.strip()
    video = next((tmp_path / "runs").glob("*-finetune-*/finetuned.mp4"))
    assert f"video of the fine-tuned policy: {video.relative_to(tmp_path)}" in table and video.stat().st_size > 0
