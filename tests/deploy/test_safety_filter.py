"""Property tests: whatever the policy and sensors emit, the filter's output is safe."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploy.safety import INTERVENTION_KINDS, SafetyConfig, SafetyFilter

torch.set_num_threads(1)

NASTY = [math.nan, math.inf, -math.inf, 1e30, -1e30, 3.4e38, -3.4e38, 0.0, -0.0]
PROPERTY_SETTINGS = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _value() -> st.SearchStrategy[float]:
    return st.one_of(
        st.sampled_from(NASTY),
        st.floats(-30.0, 30.0, width=32),
        st.floats(width=32),  # anything float32 can hold, NaN and inf included
    )


@st.composite
def configs(draw: st.DrawFn) -> tuple[SafetyConfig, int]:
    """A valid config and the observation dim it is meant for.

    Shape and which options are on are drawn; the numbers come from a drawn seed (generating
    floats one by one through hypothesis is ~1 ms each), with degenerate values (zero-width
    bounds, zero rate limit, safe action on a bound) forced in at a fixed rate.
    """
    act_dim = draw(st.integers(1, 4))
    obs_dim = draw(st.integers(2, 6))
    num_joints = draw(st.integers(0, min(act_dim, obs_dim // 2)))
    rate_limited, explicit_safe = draw(st.booleans()), draw(st.booleans())
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))

    def uniform(lo: float, hi: float, n: int, degenerate: float | None = None) -> list[float]:
        values = lo + (hi - lo) * torch.rand(n, generator=g)
        if degenerate is not None:
            values = torch.where(torch.rand(n, generator=g) < 0.15, torch.tensor(degenerate), values)
        return values.tolist()

    joint_dims = torch.randperm(act_dim, generator=g)[:num_joints].tolist()
    low = uniform(-10.0, 10.0, act_dim)
    high = [lo + w for lo, w in zip(low, uniform(0.0, 20.0, act_dim, degenerate=0.0))]
    for k in joint_dims:  # a joint-driving dim must be able to command "no push"
        low[k], high[k] = min(low[k], 0.0), max(high[k], 0.0)
    max_delta = uniform(0.0, 5.0, act_dim, degenerate=0.0) if rate_limited else None
    safe = None
    if explicit_safe:
        fractions = uniform(0.0, 1.0, act_dim, degenerate=1.0)
        safe = [min(max(lo + f * (hi - lo), lo), hi) for lo, hi, f in zip(low, high, fractions)]
    joints: dict = {}
    if num_joints:
        indices = torch.randperm(obs_dim, generator=g).tolist()
        lower = uniform(-3.0, 0.0, num_joints)
        joints = dict(
            joint_pos_indices=indices[:num_joints],
            joint_vel_indices=indices[num_joints : 2 * num_joints],
            joint_lower=lower,
            joint_upper=[lo + w for lo, w in zip(lower, uniform(0.01, 3.0, num_joints))],
            joint_action_indices=joint_dims,
            control_period=uniform(0.001, 0.1, 1)[0],
        )
    config = SafetyConfig(action_low=low, action_high=high, max_delta=max_delta, safe_action=safe, **joints)
    config.validate(obs_dim=obs_dim)
    return config, obs_dim


def _seeded_values(seed: int, n: int) -> list[float]:
    """Cheap bulk values: random magnitudes with NaN/inf/1e30 sprinkled in at a seed-chosen rate."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.tensor([0.1, 1.0, 10.0, 1e3])[torch.randint(4, (n,), generator=g)]
    values = torch.randn(n, generator=g) * scales
    nasty = torch.tensor(NASTY, dtype=torch.float32)[torch.randint(len(NASTY), (n,), generator=g)]
    rate = (0.0, 0.1, 0.5)[seed % 3]
    return torch.where(torch.rand(n, generator=g) < rate, nasty, values).tolist()


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[SafetyConfig, list]:
    """A config plus a sequence of ("step", obs, action) and ("reset",) events.

    Most steps come from a drawn seed (fast to generate); some are drawn value by value so
    hypothesis can shrink failures to readable edge cases.
    """
    config, obs_dim = draw(configs())
    act_dim = config.act_dim
    explicit = st.tuples(
        st.just("step"),
        st.lists(_value(), min_size=obs_dim, max_size=obs_dim),
        st.lists(_value(), min_size=act_dim, max_size=act_dim),
    )
    events: list = []
    for seed in draw(st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=12)):
        reset = seed % 8 == 0
        seeded = ("step", _seeded_values(seed, obs_dim), _seeded_values(seed + 1, act_dim))
        events.append(("reset",) if reset else seeded)
    for step in draw(st.lists(explicit, max_size=2)):
        events.insert(draw(st.integers(0, len(events))), step)
    return config, events


def _f32(values: list) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _check_step(
    filt: SafetyFilter, config: SafetyConfig, obs: torch.Tensor, out: torch.Tensor, ref: torch.Tensor
) -> None:
    low, high = _f32(config.action_low), _f32(config.action_high)
    assert torch.isfinite(out).all(), out
    assert (out >= low).all() and (out <= high).all(), (out, low, high)
    delta = filt.max_delta
    slack = 1e-6 * (1.0 + ref.abs() + torch.where(torch.isfinite(delta), delta, torch.zeros_like(delta)))
    assert ((out - ref).abs() <= delta + slack).all(), (out, ref, delta)
    if config.num_joints:
        q, qdot = obs[config.joint_pos_indices], obs[config.joint_vel_indices]
        predicted = q + qdot * config.control_period
        for j, k in enumerate(config.joint_action_indices):
            if predicted[j] >= config.joint_upper[j]:  # push towards the limit may only shrink
                assert out[k] <= max(0.0, float(ref[k] - delta[k])) + float(slack[k]), (j, k, out, ref)
            if predicted[j] <= config.joint_lower[j]:
                assert out[k] >= min(0.0, float(ref[k] + delta[k])) - float(slack[k]), (j, k, out, ref)


@PROPERTY_SETTINGS
@given(scenarios())
def test_outputs_are_finite_bounded_rate_limited_and_respect_joint_limits(scenario) -> None:
    config, events = scenario
    filt = SafetyFilter(config)
    ref = _f32(config.resolved_safe_action())
    with torch.no_grad():
        for event in events:
            if event[0] == "reset":
                filt.reset()
                ref = _f32(config.resolved_safe_action())
                continue
            obs, action = _f32(event[1]), _f32(event[2])
            out = filt(obs, action)
            _check_step(filt, config, obs, out, ref)
            if not (torch.isfinite(obs).all() and torch.isfinite(action).all()) and not config.num_joints:
                assert torch.equal(out, ref), "non-finite input must hold the last safe action"
            ref = out.clone()


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_reset_restores_initial_state(scenario) -> None:
    config, events = scenario
    filt, fresh = SafetyFilter(config), SafetyFilter(config)
    initial = {k: v.clone() for k, v in filt.state_dict().items()}
    steps = [e for e in events if e[0] == "step"]
    with torch.no_grad():
        for _, obs, action in steps:
            filt(_f32(obs), _f32(action))
        filt.reset()
        for name, value in filt.state_dict().items():
            assert torch.equal(value.nan_to_num(), initial[name].nan_to_num()), name  # NaN marks "no joint"
        for _, obs, action in steps:
            assert torch.equal(filt(_f32(obs), _f32(action)), fresh(_f32(obs), _f32(action)))
    assert filt.interventions() == fresh.interventions()


@pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated:DeprecationWarning")
@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_scripted_filter_equals_eager(scenario) -> None:
    config, events = scenario
    eager = SafetyFilter(config)
    scripted = torch.jit.script(copy.deepcopy(eager))  # script shares tensors with its source: copy first
    with torch.no_grad():
        for event in events:
            if event[0] == "reset":
                eager.reset()
                scripted.reset()
                continue
            obs, action = _f32(event[1]), _f32(event[2])
            assert torch.equal(eager(obs, action), scripted(obs, action))
    assert torch.equal(eager.intervention_counts, scripted.intervention_counts)


@settings(max_examples=200, deadline=None)
@given(scenarios(), st.integers(2, 4))
def test_pure_step_broadcasts_over_a_batch(scenario, batch) -> None:
    """`step` on B stacked robots equals B independent single-robot filters."""
    config, events = scenario
    steps = [e for e in events if e[0] == "step"]
    filters = [SafetyFilter(config) for _ in range(batch)]
    batched = SafetyFilter(config)
    prev = batched.prev_action.expand(batch, -1).clone()
    has_prev = torch.zeros(batch, 1, dtype=torch.bool)
    counts = batched.intervention_counts.clone()
    with torch.no_grad():
        for i, (_, obs, action) in enumerate(steps):
            rows = [_f32(obs) * (r + 1) if r != i % batch else _f32(obs) for r in range(batch)]
            actions = _f32(action).expand(batch, -1)
            out, prev, has_prev, counts = batched.step(torch.stack(rows), actions, prev, has_prev, counts)
            for r, f in enumerate(filters):
                assert torch.equal(out[r], f(rows[r], _f32(action)))
    expected = [sum(f.intervention_counts[k].item() for f in filters) for k in range(len(INTERVENTION_KINDS))]
    assert counts.tolist() == expected


def _simple_filter(**overrides) -> SafetyFilter:
    base = dict(action_low=[-1.0, -1.0], action_high=[1.0, 1.0], max_delta=[0.5, 0.5])
    return SafetyFilter(SafetyConfig.from_dict({**base, **overrides}))


def test_counters_count_each_kind() -> None:
    filt = _simple_filter(
        joint_pos_indices=[0],
        joint_vel_indices=[1],
        joint_lower=[-1.0],
        joint_upper=[1.0],
        joint_action_indices=[1],
        control_period=0.1,
    )
    far_from_limit = _f32([0.0, 0.0])
    with torch.no_grad():
        assert filt(far_from_limit, _f32([0.2, 0.0])).tolist() == pytest.approx([0.2, 0.0])
        assert filt.interventions() == dict(clamp=0, rate=0, nonfinite=0, joint_limit=0)
        out = filt(far_from_limit, _f32([5.0, 0.0]))  # clamp to 1, then rate limit to 0.2 + 0.5
        assert out.tolist() == pytest.approx([0.7, 0.0])
        assert filt.interventions() == dict(clamp=1, rate=1, nonfinite=0, joint_limit=0)
        out = filt(_f32([math.nan, 0.0]), _f32([0.0, 0.0]))
        assert out.tolist() == pytest.approx([0.7, 0.0])  # held
        out = filt(far_from_limit, _f32([0.7, math.inf]))
        assert out.tolist() == pytest.approx([0.7, 0.0])
        assert filt.interventions() == dict(clamp=1, rate=1, nonfinite=2, joint_limit=0)
        near_upper = _f32([0.95, 1.0])  # predicted 1.05 >= 1.0
        out = filt(near_upper, _f32([0.7, 0.4]))
        assert out.tolist() == pytest.approx([0.7, 0.0])
        out = filt(near_upper, _f32([0.7, -0.4]))  # pulling away from the limit is allowed
        assert out.tolist() == pytest.approx([0.7, -0.4])
        assert filt.interventions() == dict(clamp=1, rate=1, nonfinite=2, joint_limit=1)
        filt.reset()
        assert filt.interventions() == dict(clamp=0, rate=0, nonfinite=0, joint_limit=0)


def test_first_step_is_rate_limited_relative_to_safe_action() -> None:
    filt = _simple_filter(safe_action=[0.5, -0.5])
    with torch.no_grad():
        assert filt(_f32([0.0]), _f32([-1.0, 1.0])).tolist() == pytest.approx([0.0, 0.0])
        filt.reset()
        assert filt(_f32([math.nan]), _f32([1.0, 1.0])).tolist() == pytest.approx([0.5, -0.5])


def test_default_safe_action_is_zero_inside_bounds_else_midpoint() -> None:
    config = SafetyConfig(action_low=[-1.0, 1.0, -4.0], action_high=[1.0, 3.0, -2.0])
    assert config.resolved_safe_action() == [0.0, 2.0, -3.0]


def test_no_rate_limit_when_max_delta_is_none() -> None:
    filt = SafetyFilter(SafetyConfig(action_low=[-1.0], action_high=[1.0]))
    with torch.no_grad():
        assert filt(_f32([0.0]), _f32([1e30])).tolist() == [1.0]
        assert filt(_f32([0.0]), _f32([-1e30])).tolist() == [-1.0]


def test_pusher_config_loads(pusher_safety: SafetyConfig) -> None:
    config = pusher_safety
    config.validate(obs_dim=23, act_dim=7)
    assert config.num_joints == 7


# A valid one-joint lookahead config; each bad case below changes one thing in it.
ONE_JOINT = dict(
    action_low=[-1.0],
    action_high=[1.0],
    joint_pos_indices=[0],
    joint_vel_indices=[1],
    joint_lower=[0.0],
    joint_upper=[1.0],
    joint_action_indices=[0],
    control_period=0.1,
)
BAD_CONFIGS = [
    (dict(action_low=[], action_high=[]), "required"),
    (dict(action_low=[0.0, 0.0], action_high=[1.0]), "action_low has 2 entries but action_high has 1"),
    (dict(action_low=[1.0], action_high=[0.0]), "action_low > action_high at dims [0]"),
    (dict(action_low=[-math.inf], action_high=[0.0]), "action_low must be finite"),
    (dict(action_low=[0.0], action_high=[1.0], max_delta=[-0.1]), "max_delta must be finite and >= 0"),
    (dict(action_low=[0.0], action_high=[1.0], max_delta=[math.nan]), "max_delta must be finite and >= 0"),
    (dict(action_low=[0.0], action_high=[1.0], max_delta=[0.1, 0.1]), "max_delta has 2 entries, expected 1"),
    (dict(action_low=[0.0], action_high=[1.0], safe_action=[2.0]), "safe_action is outside"),
    (dict(action_low=[0.0], action_high=[1.0], safe_action=[math.nan]), "safe_action must be finite"),
    (dict(action_low=[-1.0], action_high=[1.0], joint_pos_indices=[0]), "missing"),
    ({**ONE_JOINT, "control_period": None}, "control_period > 0"),
    ({**ONE_JOINT, "joint_lower": [1.0], "joint_upper": [0.0]}, "joint_lower >= joint_upper"),
    ({**ONE_JOINT, "joint_action_indices": [3]}, "joint_action_indices [3] out of range"),
    ({**ONE_JOINT, "action_low": [0.5]}, "0 (no push) must lie inside their bounds"),
    (dict(action_low=[0.0], action_high=[1.0], max_dleta=[0.1]), "unknown safety config keys ['max_dleta']"),
]


@pytest.mark.parametrize("bad, message", BAD_CONFIGS)
def test_inconsistent_configs_are_rejected_with_a_clear_message(bad: dict, message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        SafetyConfig.from_dict(bad)
    assert message in str(excinfo.value)


def test_observation_indices_are_checked_against_obs_dim() -> None:
    config = SafetyConfig(**{**ONE_JOINT, "joint_vel_indices": [5]})
    with pytest.raises(ValueError, match="joint_vel_indices .* out of range for observation dim 3"):
        SafetyFilter(config, obs_dim=3)
