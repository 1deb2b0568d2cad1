"""The training loop for a seed batch (`train.seeds`): one loop, N runs written.

The loop is `Trainer`'s; what differs is the bookkeeping. Every seed writes an ordinary run directory
(metrics, evaluations, learning curves, checkpoints in the single-run format, its own RNG states), so
each seed can be evaluated, exported, fine-tuned or resumed alone like any run, and the batch resumes
by stacking its seeds' last checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from robo_offline.algos import Algorithm
from robo_offline.algos.seed_batch import load_seed_training_states, seed_training_state
from robo_offline.data import Batch
from robo_offline.training.checkpoint import LAST, CheckpointError, load_checkpoint, save_checkpoint
from robo_offline.training.metrics import MetricsLogger
from robo_offline.training.plots import plot_learning_curves
from robo_offline.training.precision import Precision
from robo_offline.training.rng import rng_state, set_rng_state
from robo_offline.training.trainer import PRECISION_FILE, LoopConfig, Trainer, describe_metrics


@dataclass
class SeedRun:
    """One seed of the batch: where it writes, what draws its minibatches, how it is evaluated, what its
    checkpoints add (`extra_state`) and how a resumed checkpoint is checked (`check_state`)."""

    seed: int
    run_dir: Path
    sampler: torch.Generator
    evaluate: Callable[[int], dict[str, Any]] | None = None
    extra_state: Callable[[], dict[str, Any]] | None = None
    check_state: Callable[[dict[str, Any]], None] | None = None


class SeedBatchTrainer(Trainer):
    """`Trainer` over an algorithm stacked by `seed_batch.stack_seeds`, one `SeedRun` per seed."""

    def __init__(self, algo: Algorithm, sample: Callable[[], Batch], cfg: LoopConfig, runs: Sequence[SeedRun]):
        if algo.seed_batch is None or len(algo.seed_batch) != len(runs):
            raise ValueError("SeedBatchTrainer needs an algorithm stacked over exactly its runs' seeds")
        first = runs[0]
        super().__init__(algo, sample, cfg, first.run_dir, evaluate=first.evaluate)
        self.runs = list(runs)
        self.loggers = [self.metrics] + [MetricsLogger(r.run_dir) for r in self.runs[1:]]

    def _write_precision(self) -> None:
        for run in self.runs:
            (run.run_dir / PRECISION_FILE).write_text(self.precision.describe() + "\n")

    def _log_train(self, step: int, extra: dict[str, Any], updates_per_s: float) -> dict[str, Any]:
        means = {k: (v / self.cfg.log_every).tolist() for k, v in self.loss_sums.items()}  # one read for all seeds
        rows = []
        for i, logger in enumerate(self.loggers):
            row = {k: v[i] for k, v in means.items()} | extra | {"updates_per_s": updates_per_s}
            logger.log("train", step, row)
            rows.append(row)
        return rows[0]

    def _evaluate(self, step: int) -> list[dict[str, Any]]:
        results = []
        for run, logger in zip(self.runs, self.loggers):
            metrics = run.evaluate(step)
            logger.log("eval", step, metrics)
            tqdm.write(f"seed {run.seed} step {step}: {describe_metrics(metrics)}")
            results.append(metrics)
        return results

    def _close(self) -> None:
        for logger in self.loggers:
            logger.close()

    def _plot(self) -> None:
        for run in self.runs:
            plot_learning_curves(run.run_dir)

    def save(self, step: int) -> Path:
        """Each seed's checkpoint, as its single run would write it (the batch resumes from all of them)."""
        for i, run in enumerate(self.runs):
            state = {
                "step": step,
                "algo": seed_training_state(self.algo, i),
                "rng": self._seed_rng_state(i),
                "precision": self.precision.dtype,
                "loop": {"loss_sums": {k: v[i].detach().clone() for k, v in self.loss_sums.items()}},
                **(run.extra_state() if run.extra_state else {}),
            }
            path = save_checkpoint(state, run.run_dir / "checkpoints", step, keep_every=self.cfg.keep_checkpoints)
        self.last_checkpoint = path
        return path

    def resume(self) -> int:
        """Stack the seeds' last checkpoints; they must all be at the same step."""
        states = [load_checkpoint(r.run_dir / "checkpoints", self.device) for r in self.runs]
        steps = {int(s["step"]) for s in states}
        if len(steps) != 1:
            found = ", ".join(f"{r.run_dir}: step {int(s['step'])}" for r, s in zip(self.runs, states))
            raise CheckpointError(
                f"the seeds' last checkpoints are at different steps ({found}); resume each seed's run alone"
            )
        load_seed_training_states(self.algo, [s["algo"] for s in states])
        set_rng_state(states[0]["rng"])  # process-wide states (python, numpy): the same object for every seed
        for i, state in enumerate(states):
            self.runs[i].sampler.set_state(state["rng"]["generators"]["sampler"])
            self.algo.seed_batch.generators[i].set_state(self._noise_state(state["rng"]))
        sums = [s.get("loop", {}).get("loss_sums", {}) for s in states]
        self.loss_sums.update({k: torch.stack([s[k] for s in sums]) for k in sums[0]})
        stored = states[0].get("precision", "fp32")
        if stored != self.precision.dtype:
            self.precision = Precision(stored, f"as the checkpoint was trained; here {self.precision.describe()}")
        for run, state in zip(self.runs, states):
            if run.check_state is not None:
                run.check_state(state)
        self.last_checkpoint = self.runs[0].run_dir / "checkpoints" / LAST
        step = steps.pop()
        for logger in self.loggers:
            logger.truncate_after(step)
        return step

    # -- a seed's RNG states in the single-run layout -----------------------------------------------
    def _seed_rng_state(self, i: int) -> dict[str, Any]:
        """What a single run of seed i would checkpoint: its noise generator as the global torch generator of
        the device (a single run draws its noise there), its sampler as the `sampler` generator."""
        state = rng_state({"sampler": self.runs[i].sampler})
        noise = self.algo.seed_batch.generators[i].get_state()
        if self.device.type == "cuda":
            state["cuda"][self._cuda_index] = noise
        else:
            state["torch"] = noise
        return state

    def _noise_state(self, rng: dict[str, Any]) -> torch.Tensor:
        return rng["cuda"][self._cuda_index] if self.device.type == "cuda" else rng["torch"]

    @property
    def _cuda_index(self) -> int:
        return self.device.index if self.device.index is not None else torch.cuda.current_device()
