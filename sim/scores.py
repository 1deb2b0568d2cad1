"""Reference returns for normalised scores: 0 = a random policy, 100 = the reference (expert) policy."""

from __future__ import annotations

REFERENCE_RETURNS: dict[str, tuple[float, float]] = {
    # D4RL's reference returns (random, expert) for the locomotion tasks, as used in offline-RL papers.
    "Hopper-v5": (-20.272305, 3234.3),
    "HalfCheetah-v5": (-280.178953, 12135.0),
    "Walker2d-v5": (1.629008, 4592.3),
    # Measured here: mean return of uniform-random torques and of the expert scripted demonstrator over
    # 100 seeded episodes each; reproduce with `python benchmarks/demonstrator_quality.py --episodes 100`.
    "Pusher-v5": (-148.454830, -42.861156),
}


def normalized_score(env_id: str, ret: float) -> float | None:
    """100 * (ret - random) / (reference - random); None for environments without references."""
    ref = REFERENCE_RETURNS.get(env_id)
    if ref is None:
        return None
    low, high = ref
    return 100.0 * (float(ret) - low) / (high - low)
