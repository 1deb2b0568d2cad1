"""Process-wide CPU settings of the training loop: applied while it runs, restored after."""

from __future__ import annotations

import platform

import pytest
from builders import tiny_bc, tiny_bc_sampler

from robo_offline.training import cpu_tuning
from robo_offline.training.cpu_tuning import (
    DEFAULT_THRESHOLD,
    KEEP_MMAP,
    KEEP_TRIM,
    M_MMAP_THRESHOLD,
    M_TRIM_THRESHOLD,
    freed_memory_cached,
)
from robo_offline.training.trainer import LoopConfig, Trainer


class FakeLibc:
    """Records glibc's malloc thresholds as mallopt sets them."""

    def __init__(self):
        self.thresholds = {M_MMAP_THRESHOLD: DEFAULT_THRESHOLD, M_TRIM_THRESHOLD: DEFAULT_THRESHOLD}

    def mallopt(self, param: int, value: int) -> int:
        self.thresholds[param] = value
        return 1

    @property
    def kept(self) -> bool:
        return self.thresholds == {M_MMAP_THRESHOLD: KEEP_MMAP, M_TRIM_THRESHOLD: KEEP_TRIM}


@pytest.fixture
def libc(monkeypatch):
    fake = FakeLibc()
    monkeypatch.setattr(cpu_tuning, "_glibc", lambda: fake)
    return fake


def test_freed_memory_is_kept_inside_and_the_defaults_come_back_after_an_error(libc):
    with pytest.raises(KeyError), freed_memory_cached(True) as on:
        assert on and libc.kept
        raise KeyError("a failing update")
    assert libc.thresholds == {M_MMAP_THRESHOLD: DEFAULT_THRESHOLD, M_TRIM_THRESHOLD: DEFAULT_THRESHOLD}


def test_switched_off_it_touches_nothing(libc):
    with freed_memory_cached(False) as on:
        assert not on and not libc.kept


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_real_glibc_accepts_the_settings():
    with freed_memory_cached(True) as on:
        assert on


@pytest.mark.parametrize("cache", [True, False])
def test_the_trainer_keeps_freed_memory_while_training_only_when_configured(tmp_path, libc, cache):
    sample, _ = tiny_bc_sampler()
    seen = []
    Trainer(
        tiny_bc(),
        sample,
        LoopConfig(10, 5, 5, 10, progress=False, cache_freed_memory=cache),
        tmp_path,
        evaluate=lambda step: seen.append(libc.kept) or {},
    ).fit()
    assert seen == [cache, cache]
    assert not libc.kept
