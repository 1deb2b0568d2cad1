"""Malformed inputs raise one `DatasetError` naming the file and key; `nonfinite="drop"` repairs."""

from __future__ import annotations

import json

import gymnasium as gym
import h5py
import numpy as np
import pytest
import torch
from builders import d4rl_arrays, make_episode, robomimic_demo, write_d4rl, write_robomimic

from robo_offline.data import DatasetError, load_dataset, write_minari_dataset

torch.set_num_threads(1)


def _with(arrays, **changes):
    out = {k: v.copy() for k, v in arrays.items()}
    for key, value in changes.items():
        if value is None:
            del out[key]
        else:
            out[key] = value
    return out


def _nan_at(array, row):
    array = array.copy()
    array.reshape(len(array), -1)[row, 0] = np.nan
    return array


BASE = d4rl_arrays(np.random.default_rng(0))
OUT_OF_BOUNDS = BASE["actions"].copy()
OUT_OF_BOUNDS[3, 1] = 1.5
INF_REWARD = np.where(np.arange(20) == 2, np.inf, BASE["rewards"]).astype(np.float32)
BOX_2D = gym.spaces.Box(-1, 1, (2,))

D4RL_CASES = {
    # name: (arrays, load kwargs, attrs, expected key)
    "missing key": (_with(BASE, rewards=None), {}, {}, "rewards"),
    "length mismatch": (_with(BASE, actions=BASE["actions"][:-1]), {}, {}, "actions"),
    "nan observation": (_with(BASE, observations=_nan_at(BASE["observations"], 7)), {}, {}, "observations"),
    "inf reward": (_with(BASE, rewards=INF_REWARD), {}, {}, "rewards"),
    "nan next observation": (
        _with(BASE, next_observations=_nan_at(BASE["next_observations"], 0)), {}, {}, "next_observations"),
    "observation dim": (BASE, {"observation_space": gym.spaces.Box(-1, 1, (4,))}, {}, "observations"),
    "action dim": (BASE, {"action_space": gym.spaces.Box(-1, 1, (3,))}, {}, "actions"),
    "action outside space": (_with(BASE, actions=OUT_OF_BOUNDS), {"action_space": BOX_2D}, {}, "actions"),
    "action outside file bounds": (
        _with(BASE, actions=OUT_OF_BOUNDS), {}, {"action_low": [-1.0, -1.0], "action_high": [1.0, 1.0]}, "actions"),
    "zero transitions": ({k: v[:0] for k, v in BASE.items()}, {}, {}, "observations"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(D4RL_CASES))
def test_malformed_d4rl_names_file_and_key(tmp_path, case):
    arrays, kwargs, attrs, key = D4RL_CASES[case]
    path = write_d4rl(tmp_path / "bad.hdf5", arrays, attrs)
    with pytest.raises(DatasetError) as err:
        load_dataset(path, **kwargs)
    assert err.value.path == str(path) and err.value.key == key
    assert str(path) in str(err.value) and repr(key) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="does not exist") as err:
        load_dataset(tmp_path / "nope.hdf5")
    assert str(tmp_path / "nope.hdf5") in str(err.value)


def test_not_hdf5(tmp_path):
    path = tmp_path / "notes.hdf5"
    path.write_text("observations,actions\n1,2\n")
    with pytest.raises(DatasetError, match="HDF5") as err:
        load_dataset(path)
    assert str(path) in str(err.value)


def test_truncated_file(tmp_path):
    path = write_d4rl(tmp_path / "cut.hdf5", d4rl_arrays(np.random.default_rng(1), n=2000))
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    assert str(path) in str(err.value)
    assert not isinstance(err.value.__cause__, DatasetError)  # wraps h5py's OSError
    assert isinstance(err.value.__cause__, OSError)


def test_empty_hdf5_file(tmp_path):
    path = tmp_path / "empty.hdf5"
    h5py.File(path, "w").close()
    with pytest.raises(DatasetError, match="empty") as err:
        load_dataset(path)
    assert str(path) in str(err.value)


def test_action_bound_tolerance(tmp_path):
    arrays = _with(BASE)
    arrays["actions"][0, 0] = 1.0 + 5e-7
    path = write_d4rl(tmp_path / "tol.hdf5", arrays, {"action_low": [-1.0, -1.0], "action_high": [1.0, 1.0]})
    assert load_dataset(path).n_transitions == 20
    arrays["actions"][0, 0] = 1.0 + 1e-4
    path = write_d4rl(tmp_path / "over.hdf5", arrays, {"action_low": [-1.0, -1.0], "action_high": [1.0, 1.0]})
    with pytest.raises(DatasetError, match="outside the declared bounds"):
        load_dataset(path)
    assert load_dataset(path, check_action_bounds=False).actions.max() > 1.0


def test_nonfinite_drop_removes_rows_reports_count_and_cuts_episodes(tmp_path):
    observations = _nan_at(BASE["observations"], 2)
    rewards = BASE["rewards"].copy()
    rewards[12] = np.inf
    path = write_d4rl(tmp_path / "nan.hdf5", _with(BASE, observations=observations, rewards=rewards))

    with pytest.warns(UserWarning, match="dropped 2"):
        data = load_dataset(path, nonfinite="drop")
    assert data.n_transitions == 18
    assert data.metadata["n_dropped"] == 2
    assert data.metadata["nonfinite_counts"] == {"observations": 1, "rewards": 1}
    assert torch.isfinite(data.observations).all() and torch.isfinite(data.rewards).all()
    kept = [i for i in range(20) if i not in (2, 12)]
    np.testing.assert_array_equal(data.rewards.numpy(), rewards[kept])
    # Rows 1 and 11 preceded a dropped row: they now end their episodes (as timeouts), so no
    # transition or return runs across the gap.
    ends = np.flatnonzero((data.terminals + data.timeouts).numpy())
    assert [kept[i] for i in ends] == [1, 4, 9, 11, 14, 19]
    assert data.terminals.numpy()[kept.index(9)] == 1


def test_drop_everything_is_an_error(tmp_path):
    path = write_d4rl(tmp_path / "allnan.hdf5", _with(BASE, rewards=np.full(20, np.nan, np.float32)))
    with pytest.warns(UserWarning), pytest.raises(DatasetError, match="zero transitions"):
        load_dataset(path, nonfinite="drop")


def _minari(tmp_path, episodes):
    return write_minari_dataset(
        tmp_path / "m",
        episodes,
        dataset_id="robo-offline/bad-v0",
        env_id=None,
        observation_space=gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
        action_space=gym.spaces.Box(-1, 1, (2,), np.float32),
    )


def test_minari_nan_names_the_episode(tmp_path):
    rng = np.random.default_rng(2)
    episodes = [make_episode(rng, 3), make_episode(rng, 4)]
    episodes[1].observations[2, 1] = np.nan
    root = _minari(tmp_path, episodes)
    with pytest.raises(DatasetError) as err:
        load_dataset(root)
    assert err.value.key == "episode_1/observations"
    assert "main_data.hdf5" in str(err.value)


def test_minari_length_mismatch_names_the_episode(tmp_path):
    root = _minari(tmp_path, [make_episode(np.random.default_rng(3), 3)])
    with h5py.File(root / "data" / "main_data.hdf5", "a") as f:
        del f["episode_0/rewards"]
        f["episode_0/rewards"] = np.zeros(2)
    with pytest.raises(DatasetError) as err:
        load_dataset(root)
    assert err.value.key == "episode_0/rewards" and "main_data.hdf5" in str(err.value)


def test_minari_directory_without_data(tmp_path):
    (tmp_path / "nothing" / "data").mkdir(parents=True)
    (tmp_path / "nothing" / "data" / "metadata.json").write_text(json.dumps({"data_format": "arrow"}))
    with pytest.raises(DatasetError, match="arrow") as err:
        load_dataset(tmp_path / "nothing")
    assert err.value.key == "main_data.hdf5"


def test_robomimic_missing_key(tmp_path):
    demo = robomimic_demo(np.random.default_rng(4), 3, done=True)
    path = write_robomimic(tmp_path / "r.hdf5", [demo])
    with h5py.File(path, "a") as f:
        del f["data/demo_0/dones"]
    with pytest.raises(DatasetError) as err:
        load_dataset(path, obs_keys=["eef_pos"])
    assert err.value.key == "data/demo_0/dones" and str(path) in str(err.value)


def test_unknown_nonfinite_policy(tmp_path):
    path = write_d4rl(tmp_path / "ok.hdf5", BASE)
    with pytest.raises(ValueError, match="nonfinite"):
        load_dataset(path, nonfinite="ignore")


def test_non_numeric_array(tmp_path):
    path = write_d4rl(tmp_path / "text.hdf5", _with(BASE, rewards=np.array([b"high"] * 20)))
    with pytest.raises(DatasetError, match="dtype") as err:
        load_dataset(path)
    assert err.value.key == "rewards"
