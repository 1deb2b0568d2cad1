"""N seeds of one configuration trained as one model (`train.seeds`).

Every parameter and buffer gets a leading seed dimension; each phase of an update runs once for all
seeds under `torch.func.vmap`, with one seed's slice of the parameters swapped into the algorithm
(`torch.func.functional_call`), so the algorithm files are unchanged. The seeds' losses are summed
before the backward: seed s's parameters receive exactly seed s's gradient, and Adam, being
elementwise, keeps independent moments per seed. Random draws come from one generator per seed,
each starting where its single run's global generator would be after building the networks, so
seed s trains as the single run with `train.seed = s` does (tests/algos/test_seed_batch.py).

On a GPU small MLPs leave the device idle and this is N times the work per kernel launch; on a CPU
the matmuls are already compute-bound (benchmarks/seed_batching.py has the figures).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from robo_offline.algos.base import Algorithm


def default_generator_state(device: torch.device) -> Tensor:
    """The global torch generator's state on `device` (what a single run draws its noise from)."""
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def set_default_generator_state(device: torch.device, state: Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


class SeedBatch:
    """What an algorithm with stacked seeds needs to run a phase and draw noise per seed."""

    def __init__(self, seeds: Sequence[int], generators: Sequence[torch.Generator]):
        self.seeds = list(seeds)
        self.generators = list(generators)

    def __len__(self) -> int:
        return len(self.seeds)

    def run_phase(
        self, algo: Algorithm, losses_fn: Callable[..., tuple[dict[str, Tensor], Any]], *inputs: Any
    ) -> tuple[dict[str, Tensor], Any]:
        """`losses_fn` for every seed at once: (losses summed over seeds, info with a leading seed dim)."""
        params = dict(algo.named_parameters())
        buffers = dict(algo.named_buffers())

        def one_seed(p: dict[str, Tensor], b: dict[str, Tensor], *x: Any) -> tuple[dict[str, Tensor], Any]:
            return torch.func.functional_call(algo, (p, b), (losses_fn, *x))

        losses, info = torch.func.vmap(one_seed, randomness="error")(params, buffers, *inputs)
        return {k: v.sum() for k, v in losses.items()}, info

    def noise(self, shape: Sequence[int], uniform: bool, device: torch.device) -> Tensor:
        draw = torch.rand if uniform else torch.randn
        return torch.stack([draw(tuple(shape), generator=g, device=device) for g in self.generators])

    def clip_grad_norm_(self, params: list[Tensor], max_norm: float) -> None:
        """Each seed's gradients clipped to its own total norm, as its single run clips them."""
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        sq = sum(g.pow(2).reshape(len(g), -1).sum(1) for g in grads)
        scale = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))

    def rng_states(self) -> list[Tensor]:
        return [g.get_state() for g in self.generators]

    def set_rng_states(self, states: Sequence[Tensor]) -> None:
        for g, state in zip(self.generators, states):
            g.set_state(state)


def stack_seeds(build: Callable[[], Algorithm], seeds: Sequence[int], device: torch.device) -> Algorithm:
    """One algorithm holding `len(seeds)` seeds: seed s's networks built by `build()` right after
    `torch.manual_seed(s)`, exactly as a single run builds them. Call `setup` afterwards, as for any
    algorithm: the optimisers then hold the stacked parameters."""
    members, generators = [], []
    for seed in seeds:
        torch.manual_seed(seed)
        members.append(build().to(device))
        generator = torch.Generator(device=device)
        generator.set_state(default_generator_state(device))
        generators.append(generator)
    algo = members[0]
    tensors = [dict([*m.named_parameters(), *m.named_buffers()]) for m in members]
    for name, tensor in tensors[0].items():
        with torch.no_grad():
            stacked = torch.stack([t[name] for t in tensors])
        owner, _, attr = name.rpartition(".")
        module = algo.get_submodule(owner)
        if isinstance(tensor, nn.Parameter):
            module._parameters[attr] = nn.Parameter(stacked, requires_grad=tensor.requires_grad)
        else:
            module._buffers[attr] = stacked
    algo.seed_batch = SeedBatch(seeds, generators)
    return algo


def seed_state_dict(algo: Algorithm, index: int) -> dict[str, Tensor]:
    """Seed `index`'s weights and buffers, for a single-seed instance of the algorithm (evaluation, export)."""
    return {k: v[index] for k, v in algo.state_dict().items()}


def seed_training_state(algo: Algorithm, index: int) -> dict[str, Any]:
    """The `training_state()` seed `index` of a stacked algorithm would have as a single run."""
    state = algo.training_state()
    state["modules"] = {k: v[index].clone() for k, v in state["modules"].items()}
    for name, opt in algo.optimizers.items():
        params = [p for g in opt.param_groups for p in g["params"]]  # every one stacked
        opt_state = state["optimizers"][name]
        for i, p in enumerate(params):
            if i in opt_state["state"]:
                opt_state["state"][i] = {
                    k: v[index].clone() if _per_seed(k, v, p.shape) else v for k, v in opt_state["state"][i].items()
                }
    return state


def load_seed_training_states(algo: Algorithm, states: Sequence[dict[str, Any]]) -> None:
    """Inverse of `seed_training_state`: restore a stacked algorithm from its seeds' single-run states."""
    first = {
        **states[0],
        "modules": {k: torch.stack([s["modules"][k] for s in states]) for k in states[0]["modules"]},
        "optimizers": copy.deepcopy(states[0]["optimizers"]),  # its per-seed entries are replaced below
    }
    for name, opt in algo.optimizers.items():
        params = [p for g in opt.param_groups for p in g["params"]]
        for i, p in enumerate(params):
            entries = [s["optimizers"][name]["state"].get(i) for s in states]
            if entries[0] is None:
                continue
            first["optimizers"][name]["state"][i] = {
                k: torch.stack([e[k] for e in entries]) if _per_seed(k, v, p.shape[1:]) else v
                for k, v in entries[0].items()
            }
    algo.load_training_state(first)


def _per_seed(key: str, value: Any, param_shape: torch.Size) -> bool:
    """An optimiser state entry held per seed: Adam's moments (the parameter's shape), not its step count
    (one scalar, equal for every seed; a scalar parameter's moments have the same shape)."""
    return key != "step" and torch.is_tensor(value) and value.shape == param_shape
