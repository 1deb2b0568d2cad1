"""`RawTransitions`: what every reader produces, numpy arrays before validation and torch."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

# Fields holding float data that must be finite, in the order they are checked and reported.
FLOAT_FIELDS = ("observations", "actions", "rewards", "next_observations")


@dataclass
class RawTransitions:
    """One row per transition, flattened and concatenated across episodes.

    An episode ends at every row where `terminals | timeouts` is set; readers guarantee the last
    row ends one. `source_keys` maps each field to the key it came from in the file, so later
    validation can name the key to blame.
    """

    path: str
    format: str
    observations: np.ndarray  # (N, obs_dim) float32
    actions: np.ndarray  # (N, act_dim) float32
    rewards: np.ndarray  # (N,) float32
    next_observations: np.ndarray  # (N, obs_dim) float32
    terminals: np.ndarray  # (N,) bool
    timeouts: np.ndarray  # (N,) bool
    source_keys: dict[str, str] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    segment_names: list[str] | None = None  # file group of each row range, e.g. "episode_3"
    segment_starts: np.ndarray | None = None  # first row of each segment (before any rows are dropped)
    _action_range: tuple[float, float] | None = field(default=None, init=False, repr=False)
    _action_extrema: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return self.rewards.shape[0]

    def key_of(self, field_name: str, row: int | None = None) -> str:
        """The file key a field came from; with `row`, inside that row's episode group."""
        key = self.source_keys.get(field_name, field_name)
        if row is None or self.segment_names is None or self.segment_starts is None:
            return key
        segment = int(np.searchsorted(self.segment_starts, row, side="right")) - 1
        return f"{self.segment_names[segment]}/{key}"

    def action_range(self) -> tuple[float, float]:
        """Smallest and largest action component, computed once. Serves both the finiteness
        check (NaN/inf shows up here) and, usually on its own, the bounds check."""
        if self._action_range is None:
            if self.actions.size == 0:
                self._action_range = (0.0, 0.0)
            else:  # torch finds both in one pass over memory, numpy needs two
                lowest, highest = torch.aminmax(torch.from_numpy(np.ascontiguousarray(self.actions)))
                self._action_range = (float(lowest), float(highest))
        return self._action_range

    def action_extrema(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension action min and max, computed once."""
        if self._action_extrema is None:
            self._action_extrema = _column_extrema(self.actions)
        return self._action_extrema

    def episode_ends(self) -> np.ndarray:
        ends = self.terminals | self.timeouts
        if len(ends):
            ends[-1] = True
        return ends

    def drop_rows(self, drop: np.ndarray) -> "RawTransitions":
        """Remove rows where `drop` is set without stitching episodes across the gap.

        The kept row just before a dropped one becomes a timeout unless it is terminal: its own
        next observation is genuine, but the return after it is unknown, so its episode must
        end there rather than continue into whatever follows the gap.
        """
        if not drop.any():
            return self
        keep = np.flatnonzero(~drop)
        return replace(
            self,
            observations=np.take(self.observations, keep, axis=0),
            actions=np.take(self.actions, keep, axis=0),
            rewards=self.rewards[keep],
            next_observations=np.take(self.next_observations, keep, axis=0),
            terminals=self.terminals[keep],
            timeouts=timeouts_at_gaps(self.terminals, self.timeouts, drop)[keep],
            segment_names=None,  # row numbers no longer match the file's
            segment_starts=None,
        )


def timeouts_at_gaps(terminals: np.ndarray, timeouts: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """`timeouts`, also set on every non-terminal row that is followed by a dropped row."""
    before_gap = np.zeros_like(drop)
    before_gap[:-1] = drop[1:]
    return timeouts | (before_gap & ~terminals)


def concat_episodes(
    path: str,
    fmt: str,
    observations: list[np.ndarray],
    actions: list[np.ndarray],
    rewards: list[np.ndarray],
    terminations: list[np.ndarray],
    truncations: list[np.ndarray],
    *,
    next_observations: list[np.ndarray] | None = None,
    source_keys: dict[str, str] | None = None,
    metadata: dict | None = None,
    segments: tuple[list[str], list[int]] | None = None,
) -> RawTransitions:
    """Join per-episode arrays (float32 2-D, bool flags) into one `RawTransitions`.

    Without `next_observations`, each episode's observations have T+1 rows (gymnasium and
    Minari convention) and are split into current and next. The last step of every episode is
    marked a timeout unless it terminated, so episode boundaries survive concatenation.
    The lists must hold at least one episode. `segments` = (group name, transitions) per
    episode, so that errors can name the group a bad row came from.
    """
    if next_observations is None:
        next_observations = [obs[1:] for obs in observations]
        observations = [obs[:-1] for obs in observations]
    last_step = []
    for flags in terminations:
        is_last = np.zeros(len(flags), dtype=bool)
        if len(flags):
            is_last[-1] = True
        last_step.append(is_last)
    terminals = np.concatenate(terminations)
    timeouts = np.concatenate(truncations) | (np.concatenate(last_step) & ~terminals)
    return RawTransitions(
        path=path,
        format=fmt,
        observations=np.concatenate(observations, dtype=np.float32),
        actions=np.concatenate(actions, dtype=np.float32),
        rewards=np.concatenate(rewards, dtype=np.float32),
        next_observations=np.concatenate(next_observations, dtype=np.float32),
        terminals=terminals,
        timeouts=timeouts,
        source_keys=source_keys or {},
        metadata=metadata or {},
        segment_names=list(segments[0]) if segments else None,
        segment_starts=np.cumsum([0, *segments[1][:-1]]) if segments else None,
    )


def _column_extrema(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column min and max of a (rows, cols) array; NaN anywhere in a column makes both NaN.

    numpy reduces a tall, narrow array along axis 0 an order of magnitude slower than a wide
    one, so rows are first folded into wide rows of `fold` original rows each.
    """
    rows, cols = array.shape
    fold = max(1, 256 // max(cols, 1))
    body = rows - rows % fold
    parts = [array[:body].reshape(-1, fold * cols)] if body else []
    if body < rows:
        parts.append(array[body:])
    lows = [part.min(axis=0).reshape(-1, cols).min(axis=0) for part in parts]
    highs = [part.max(axis=0).reshape(-1, cols).max(axis=0) for part in parts]
    return np.min(lows, axis=0), np.max(highs, axis=0)
