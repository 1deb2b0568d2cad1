"""A trained algorithm as an environment-facing policy: raw observations in, env-unit actions out."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


class InferencePolicy:
    """normalise -> deterministic policy -> scale [-1, 1] to the action bounds (batched numpy I/O).

    The same composition, plus the safety filter, is what `deploy` exports; in simulation the
    safety filter is applied by the environment wrapper instead, per sub-environment.
    """

    def __init__(self, policy: nn.Module, obs_mean: Tensor, obs_std: Tensor, action_low: np.ndarray, action_high: np.ndarray):
        self.policy = policy
        device = obs_mean.device
        self.device = device
        self.obs_mean, self.obs_std = obs_mean, obs_std
        self.low = torch.as_tensor(action_low, dtype=torch.float32, device=device)
        self.high = torch.as_tensor(action_high, dtype=torch.float32, device=device)

    @torch.no_grad()
    def act_tensor(self, obs: Tensor) -> Tensor:
        """Env-unit actions for a batch of raw observations (stays on device)."""
        a = self.policy((obs - self.obs_mean) / self.obs_std)
        return self.low + (a.clamp(-1.0, 1.0) + 1.0) * 0.5 * (self.high - self.low)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
        single = obs_t.dim() == 1
        act = self.act_tensor(obs_t.unsqueeze(0) if single else obs_t)
        act = act.cpu().numpy()
        return act[0] if single else act
