"""The one training loop every algorithm runs on.

The loop owns what algorithms should not: batch sampling, the precision (bf16 autocast where it is
native), the non-finite guard, metrics, periodic evaluation, checkpoints, the learning-curve plot and
stopping on SIGINT/SIGTERM with a checkpoint of the last finished step. Per step it issues only device
work; the host reads values back at log, eval and checkpoint steps.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from robo_offline.algos import Algorithm
from robo_offline.data import Batch
from robo_offline.training.checkpoint import LAST, load_checkpoint, save_checkpoint
from robo_offline.training.cpu_tuning import denormals_flushed, freed_memory_cached
from robo_offline.training.interrupt import StopRequest, TrainingInterrupted, stop_on_signals
from robo_offline.training.metrics import MetricsLogger
from robo_offline.training.plots import plot_learning_curves
from robo_offline.training.precision import Precision, resolve_precision
from robo_offline.training.rng import rng_state, set_rng_state

PRECISION_FILE = "precision.txt"  # the run's resolved precision and why, beside config.yaml


class NonFiniteLossError(RuntimeError):
    """A loss became NaN/inf; training stopped and the last good checkpoint was kept."""


class LossWatch:
    """Remembers the first step at which any loss was non-finite, with no host sync per step."""

    def __init__(self, device: torch.device):
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.bad: Tensor | None = None
        self.names: list[str] = []

    def observe(self, step: int, losses: dict[str, Tensor]) -> None:
        if not self.names:
            self.names = list(losses)
        # per loss, over every seed of a seed batch
        bad = ~torch.isfinite(torch.stack([v.float().reshape(-1) for v in losses.values()])).all(-1)
        new = (self.first_bad < 0) & bad.any()
        self.first_bad = torch.where(new, step, self.first_bad)
        self.bad = bad if self.bad is None else torch.where(new, bad, self.bad)

    def check(self, last_good: Path | None) -> None:
        step = int(self.first_bad)
        if step < 0:
            return
        names = [n for n, b in zip(self.names, self.bad.tolist()) if b]
        kept = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint had been written yet"
        raise NonFiniteLossError(
            f"loss {', '.join(repr(n) for n in names)} became non-finite at step {step}; training stopped and {kept}. "
            "Try a lower learning rate, train.grad_clip, or check the data with `robo-offline inspect`."
        )


@dataclass
class LoopConfig:
    steps: int
    log_every: int
    eval_every: int
    checkpoint_every: int
    precision: str = "fp32"  # auto | fp32 | bf16 (training.precision)
    progress: bool = True
    compile: bool = False
    flush_denormal: bool = True
    cache_freed_memory: bool = True
    keep_checkpoints: bool = False  # also keep step_<n>.pt at every checkpoint (policy snapshots)

    @classmethod
    def from_train(
        cls, train: Any, steps: int | None = None, eval_every: int | None = None, checkpoint_every: int | None = None
    ) -> LoopConfig:
        """The loop of a run's `train` config section; fine-tuning counts its own steps and intervals."""
        return cls(
            steps=train.steps if steps is None else steps,
            log_every=train.log_every,
            eval_every=train.eval_every if eval_every is None else eval_every,
            checkpoint_every=train.checkpoint_every if checkpoint_every is None else checkpoint_every,
            precision=train.precision,
            progress=train.progress,
            compile=train.compile,
            flush_denormal=train.flush_denormal,
            cache_freed_memory=train.cache_freed_memory,
            keep_checkpoints=train.keep_checkpoints,
        )


class Trainer:
    """Runs `algo.update` on batches from `sample` for `cfg.steps` steps, resumable at any checkpoint.

    `evaluate(step)` returns evaluation metrics (return, success, ...); `extra_state()` adds
    run-specific entries (units, config, online buffer) to every checkpoint and
    `load_extra_state(checkpoint)` restores them on `resume()`; `generators` are the torch
    generators whose state must survive a resume.
    """

    def __init__(
        self,
        algo: Algorithm,
        sample: Callable[[], Batch],
        cfg: LoopConfig,
        run_dir: Path,
        evaluate: Callable[[int], dict[str, Any]] | None = None,
        extra_state: Callable[[], dict[str, Any]] | None = None,
        generators: dict[str, torch.Generator] | None = None,
        before_update: Callable[[int], dict[str, Any] | None] | None = None,
        load_extra_state: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.algo, self.sample, self.cfg, self.run_dir = algo, sample, cfg, Path(run_dir)
        self.evaluate, self.extra_state, self.load_extra_state = evaluate, extra_state, load_extra_state
        self.before_update = before_update
        self.generators = generators or {}
        self.device = next(algo.parameters()).device
        self.update = _compiled(algo.update, self.device) if cfg.compile else algo.update
        self.cuda_graphs = cfg.compile and self.device.type == "cuda"  # outputs are the graph's, reused next step
        self.metrics = MetricsLogger(self.run_dir)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.last_checkpoint: Path | None = None
        self.loss_sums: dict[str, Tensor] = {}  # since the last log row; checkpointed so a resume logs the same rows
        self.last_eval: dict[str, Any] = {}
        self.precision: Precision = resolve_precision(cfg.precision, self.device, algo.bf16_parity)

    def fit(self, start_step: int = 0) -> Any:
        """Train from `start_step` to `cfg.steps`; on SIGINT/SIGTERM checkpoint and raise TrainingInterrupted.
        Returns the last evaluation's metrics."""
        cpu = self.device.type == "cpu"
        with (
            denormals_flushed(self.cfg.flush_denormal and cpu),
            freed_memory_cached(self.cfg.cache_freed_memory and cpu),
            stop_on_signals() as stop,
        ):
            try:
                self._fit(start_step, stop)
            finally:
                self._close()
        self._plot()
        return self.last_eval

    def _fit(self, start_step: int, stop: StopRequest) -> None:
        cfg, watch, sums = self.cfg, LossWatch(self.device), self.loss_sums
        autocast = self.precision.autocast(self.device)
        self._write_precision()
        tqdm.write(f"precision: {self.precision.describe()}")
        bar = tqdm(
            range(start_step + 1, cfg.steps + 1),
            desc=f"{type(self.algo).__name__}",
            disable=not cfg.progress,
            initial=start_step,
            total=cfg.steps,
            dynamic_ncols=True,
            mininterval=1.0,
        )
        last_log = time.perf_counter()
        with contextlib.closing(bar):
            for step in bar:
                extra = self.before_update(step) if self.before_update else None
                batch = self.sample()
                if self.cuda_graphs:
                    torch.compiler.cudagraph_mark_step_begin()  # the last step's outputs are consumed (sums, watch)
                with autocast:
                    losses = self.update(batch)
                watch.observe(step, losses)
                for k, v in losses.items():
                    sums[k] = sums[k] + v if k in sums else v.clone()
                if step % cfg.log_every == 0:
                    watch.check(self.last_checkpoint)
                    now = time.perf_counter()
                    row = self._log_train(step, extra or {}, cfg.log_every / (now - last_log))
                    sums.clear()
                    last_log = now
                    bar.set_postfix({k: f"{v:.3g}" for k, v in list(row.items())[:3]}, refresh=False)
                if self.evaluate is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
                    watch.check(self.last_checkpoint)
                    self.last_eval = self._evaluate(step)
                if step % cfg.checkpoint_every == 0 or step == cfg.steps or stop.signame:
                    watch.check(self.last_checkpoint)
                    self.save(step)
                if stop.signame:
                    raise TrainingInterrupted(stop.signame, step, self.checkpoint_path)

    # -- what a run writes (one run here; `SeedBatchTrainer` writes one per seed) ------------------
    def _write_precision(self) -> None:
        (self.run_dir / PRECISION_FILE).write_text(self.precision.describe() + "\n")

    def _log_train(self, step: int, extra: dict[str, Any], updates_per_s: float) -> dict[str, Any]:
        """Log the mean losses since the last row; returns the row (for the progress bar)."""
        row = {k: float(v) / self.cfg.log_every for k, v in self.loss_sums.items()} | extra
        row["updates_per_s"] = updates_per_s  # includes collection and eval
        self.metrics.log("train", step, row)
        return row

    def _evaluate(self, step: int) -> Any:
        metrics = self.evaluate(step)
        self.metrics.log("eval", step, metrics)
        tqdm.write(f"step {step}: {describe_metrics(metrics)}")
        return metrics

    def _close(self) -> None:
        self.metrics.close()

    def _plot(self) -> None:
        plot_learning_curves(self.run_dir)

    def resume(self) -> int:
        """Restore the last checkpoint (algorithm, RNG states, run-specific state); returns its step."""
        state = load_checkpoint(self.checkpoint_dir, self.device)
        self.algo.load_training_state(state["algo"])
        set_rng_state(state["rng"], self.generators)
        self.loss_sums.update(state.get("loop", {}).get("loss_sums", {}))
        stored = state.get("precision", "fp32")  # checkpoints from before train.precision trained in fp32
        if stored != self.precision.dtype:  # e.g. resumed on another machine: the run keeps what it trained in
            self.precision = Precision(stored, f"as the checkpoint was trained; here {self.precision.describe()}")
        if self.load_extra_state is not None:
            self.load_extra_state(state)
        self.last_checkpoint = self.checkpoint_path
        step = int(state["step"])
        self.metrics.truncate_after(step)  # rows a killed run logged after its last checkpoint
        return step

    def save(self, step: int) -> Path:
        state = {
            "step": step,
            "algo": self.algo.training_state(),
            "rng": rng_state(self.generators),
            "precision": self.precision.dtype,
            "loop": {"loss_sums": {k: v.detach().clone() for k, v in self.loss_sums.items()}},
            **(self.extra_state() if self.extra_state else {}),
        }
        self.last_checkpoint = save_checkpoint(state, self.checkpoint_dir, step, keep_every=self.cfg.keep_checkpoints)
        return self.last_checkpoint

    @property
    def checkpoint_path(self) -> Path:
        return self.checkpoint_dir / LAST


def _compiled(
    update: Callable[[Batch], dict[str, Tensor]], device: torch.device
) -> Callable[[Batch], dict[str, Tensor]]:
    """`torch.compile` of the whole update; on CUDA in "reduce-overhead" mode, which replays it as a CUDA graph
    (one launch per update instead of hundreds of small kernels)."""
    import torch._dynamo

    # Host-side step counters (policy delay, BC warm-up) would otherwise recompile every step.
    torch._dynamo.config.allow_unspec_int_on_nn_module = True
    return torch.compile(update, mode="reduce-overhead" if device.type == "cuda" else None)


def describe_metrics(metrics: dict[str, Any]) -> str:
    """An evaluation for the progress output: `key=value, ...`, floats to 3 decimals."""
    return ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
