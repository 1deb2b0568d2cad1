"""Offline (and offline-to-online) RL algorithms, one file each, looked up by name."""

from __future__ import annotations

from robo_offline.algos.base import ActorCritic, AlgoConfig, Algorithm
from robo_offline.algos.bc import BC
from robo_offline.algos.bcq import BCQ
from robo_offline.algos.calql import CalQL
from robo_offline.algos.cql import CQL
from robo_offline.algos.iql import IQL
from robo_offline.algos.sac import SAC
from robo_offline.algos.td3bc import TD3BC

ALGORITHMS: dict[str, type[Algorithm]] = {
    "bc": BC,
    "iql": IQL,
    "cql": CQL,
    "calql": CalQL,
    "bcq": BCQ,
    "td3bc": TD3BC,
    "sac": SAC,
}


def algorithm_class(name: str) -> type[Algorithm]:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {sorted(ALGORITHMS)}") from None


__all__ = ["ALGORITHMS", "ActorCritic", "AlgoConfig", "Algorithm", "algorithm_class"]
