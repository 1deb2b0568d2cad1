"""Learning-curve PNGs from a run's metrics CSVs (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

from robo_offline.training.metrics import read_csv


def plot_learning_curves(run_dir: Path, out: Path | None = None) -> Path | None:
    """Evaluation return/success and training losses against steps; None if nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = read_csv(run_dir / "train.csv") if (run_dir / "train.csv").is_file() else {}
    evals = read_csv(run_dir / "eval.csv") if (run_dir / "eval.csv").is_file() else {}
    loss_keys = [k for k in train if k.endswith("loss")]
    panels = (
        (["return"] if "mean_return" in evals else []) + (["success"] if "success_rate" in evals else []) + loss_keys
    )
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "return":
            ax.plot(evals["step"], evals["mean_return"], marker="o")
            ax.set_title("evaluation return")
        elif panel == "success":
            ax.plot(evals["step"], evals["success_rate"], marker="o")
            ax.set_title("success rate")
            ax.set_ylim(-0.05, 1.05)
        else:
            ax.plot(train["step"], train[panel])
            ax.set_title(panel)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = out or run_dir / "learning_curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
