"""D4RL-style data tiers (random, medium, medium-replay, expert) for a locomotion task, made here.

D4RL's recipe (Fu et al. 2020) with SAC trained by `robo-offline train-online`:
- random: uniform random actions;
- medium: the first SAC snapshot that reaches a third of the best snapshot's score;
- medium-replay: what SAC's replay buffer held up to medium. It is re-recorded from the
  snapshots up to medium (equal transitions each, uniform random first, Gaussian exploration
  noise), so it can be regenerated from the shipped snapshot files alone;
- expert: the best snapshot.
Snapshots are exported policy files (`deploy/`) listed in a manifest, so recording the tiers
needs no training code and no download.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import sim
from deploy.safety import SafetyConfig
from robo_offline.datagen.demos import collect_episodes, write_demo_log
from sim.episode import Episode
from sim.evaluation import summarize

TIERS = ("random", "medium", "medium-replay", "expert")
MANIFEST = "manifest.json"
SHIPPED_POLICIES = Path(sim.__file__).resolve().parent / "policies"  # one set per directory, e.g. hopper/
MEDIUM_FRACTION = 1 / 3  # D4RL: "medium" is trained to about a third of the expert's performance
REPLAY_NOISE = 0.2  # half-ranges; stands in for the SAC policy's own sampling noise in the replay tier


@dataclass
class Snapshot:
    """One exported SAC policy: its file (relative to the manifest), when it was taken, how it scored."""

    file: str
    env_steps: int
    mean_return: float
    normalized_score: float


@dataclass
class Manifest:
    env_id: str
    snapshots: list[Snapshot]
    medium: str  # file names of the tier policies
    expert: str

    def save(self, directory: Path) -> Path:
        path = Path(directory) / MANIFEST
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = Path(directory) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(
                f"no behaviour-policy manifest at {path}; make one with `robo-offline tiers --train`"
            )
        raw = json.loads(path.read_text())
        return cls(raw["env_id"], [Snapshot(**s) for s in raw["snapshots"]], raw["medium"], raw["expert"])

    def tier_policy(self, tier: str) -> Snapshot:
        """The snapshot behind the "medium" or "expert" tier."""
        return next(s for s in self.snapshots if s.file == getattr(self, tier))

    def replay_snapshots(self) -> list[Snapshot]:
        """The snapshots SAC's buffer saw up to (and including) medium."""
        medium = self.tier_policy("medium")
        return [s for s in self.snapshots if s.env_steps <= medium.env_steps]


def pick_tiers(snapshots: list[Snapshot], fraction: float = MEDIUM_FRACTION) -> tuple[Snapshot, Snapshot]:
    """(medium, expert): expert scores best; medium is the first to reach `fraction` of the expert's score."""
    if not snapshots:
        raise ValueError("no snapshots to pick tiers from")
    expert = max(snapshots, key=lambda s: s.normalized_score)
    ordered = sorted(snapshots, key=lambda s: s.env_steps)
    medium = next(s for s in ordered if s.normalized_score >= fraction * expert.normalized_score)
    return medium, expert


def resolve_policies(path: str | Path) -> Path:
    """A directory holding a manifest, or the name of a set shipped with the package (`hopper`; older configs
    say `sim/policies/hopper`). Anything else comes back as given, for `Manifest.load` to name."""
    path = Path(path)
    shipped = SHIPPED_POLICIES / path.name
    if (path / MANIFEST).is_file() or path.parent not in (Path("."), Path("sim/policies")):
        return path
    return shipped if (shipped / MANIFEST).is_file() else path


# -- recording the tiers ----------------------------------------------------------------------------
def tier_episodes(
    tier: str,
    manifest: Manifest,
    policies_dir: Path,
    transitions: int,
    seed: int,
    safety: SafetyConfig | None = None,
    progress: bool = True,
) -> list[Episode]:
    """Episodes of one tier, `transitions` steps (whole episodes) in all."""
    env_id, policies_dir = manifest.env_id, Path(policies_dir)
    if tier == "random":
        return collect_episodes(
            env_id, "random", 0, seed=seed, safety=safety, transitions=transitions, progress=progress
        )
    if tier in ("medium", "expert"):
        policy = policies_dir / getattr(manifest, tier)
        return collect_episodes(
            env_id,
            "policy",
            0,
            seed=seed,
            safety=safety,
            policy_path=str(policy),
            transitions=transitions,
            progress=progress,
        )
    if tier == "medium-replay":
        sources = manifest.replay_snapshots()
        share = max(1, transitions // (len(sources) + 1))
        episodes = collect_episodes(env_id, "random", 0, seed=seed, safety=safety, transitions=share, progress=progress)
        for i, snap in enumerate(sources, start=1):
            episodes += collect_episodes(
                env_id,
                "policy",
                0,
                seed=seed + 100_000 * i,
                safety=safety,
                policy_path=str(policies_dir / snap.file),
                transitions=share,
                action_noise=REPLAY_NOISE,
                progress=progress,
            )
        return episodes
    raise ValueError(f"unknown tier {tier!r}; use one of {TIERS}")


def record_tier(
    tier: str,
    policies_dir: Path,
    out: Path,
    transitions: int,
    seed: int = 0,
    safety: SafetyConfig | None = None,
    progress: bool = True,
) -> Path:
    """Write one tier's log (Minari layout) at `out`; an interrupted write never looks like a dataset."""
    policies_dir = resolve_policies(policies_dir)
    manifest = Manifest.load(policies_dir)
    episodes = tier_episodes(tier, manifest, policies_dir, transitions, seed, safety, progress)
    out = Path(out)
    env_name = manifest.env_id.split("-")[0].lower()
    stats = summarize(manifest.env_id, episodes)
    return write_demo_log(
        out,
        episodes,
        manifest.env_id,
        f"{env_name}-{tier}",
        f"D4RL-style {tier} tier on {manifest.env_id}, recorded by robo-offline from {policies_dir}",
        {"tier": tier, "behaviour_policies": str(policies_dir), "mean_return": stats.mean_return},
        if_exists="replace",
    )
