"""The network library every algorithm builds from.

Critic ensembles are one module whose layers hold all members' weights, so an ensemble of
Q-functions is evaluated with one batched matmul per layer (`torch.baddbmm`) instead of a
Python loop over networks.

Every network returns fp32 (`.float()`, free in fp32): under bf16 autocast (`train.precision`) only
the matmuls run in bf16, and targets, log-probabilities, logsumexps and losses stay fp32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Normal

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
# Logged actions are clipped to +-0.999 before atanh, as the official CQL / Cal-QL code clips its datasets
# (clip_action): actions at a bound (a rate-limited or saturated log) would otherwise sit at atanh(1 - 1e-6) = 7.3
# and dominate the likelihood (measured on the Pusher medium demos, 3.5 % of action entries at a bound:
# Cal-QL's BC phase 0 % -> 10 % success after 3000 updates with the official clip).
LOGGED_ACTION_CLIP = 0.999


def mlp(
    in_dim: int,
    out_dim: int,
    hidden: Sequence[int] = (256, 256),
    activation: type[nn.Module] = nn.ReLU,
    output_activation: type[nn.Module] | None = None,
) -> nn.Sequential:
    """Plain fully connected network."""
    layers: list[nn.Module] = []
    dims = [in_dim, *hidden]
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), activation()]
    layers.append(nn.Linear(dims[-1], out_dim))
    if output_activation is not None:
        layers.append(output_activation())
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """`n` independent linear layers applied as one batched matmul: (n, B, in) -> (n, B, out)."""

    def __init__(self, in_dim: int, out_dim: int, n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same distribution as nn.Linear's default (kaiming_uniform with a=sqrt(5)): U(-1/sqrt(in), 1/sqrt(in)),
        # member by member.
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        if self.weight.shape[2] == 1 and x.dtype == self.weight.dtype:
            # One output (a Q head) in fp32: a dot product per row. A batched matmul with one output column takes a
            # slow CPU path; measured, Cal-QL's update runs 14 % faster this way (3.4 -> 3.9 updates/s, 2-core AMD
            # EPYC; level on the AMX Xeon). Activations in bf16 (autocast) take the matmul: the product would
            # promote them to fp32, and the matmul is the fast one there (CQL's update 31 -> 56 updates/s, AMX Xeon).
            return (x * self.weight.transpose(1, 2)).sum(-1, keepdim=True) + self.bias
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleMLP(nn.Module):
    """An ensemble of MLPs; input (B, in) is shared by all members, or (n, B, in) per member."""

    def __init__(self, in_dim: int, out_dim: int, n: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(EnsembleLinear(a, b, n) for a, b in zip(dims[:-1], dims[1:]))
        self.n = n

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.n, -1, -1)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):  # enumerate, not slicing: TorchScript-compatible
            x = layer(x)
            if i < last:
                x = torch.relu(x)
        return x


class Critic(nn.Module):
    """Q-ensemble: `forward(obs, act)` -> (n_critics, B); `many(obs, acts)` for K actions per state."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256), n_critics: int = 2):
        super().__init__()
        self.net = EnsembleMLP(obs_dim + act_dim, 1, n_critics, hidden)
        self.n_critics = n_critics

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        return self.net(torch.cat([obs, act], dim=-1)).squeeze(-1).float()

    def many(self, obs: Tensor, acts: Tensor) -> Tensor:
        """Q of K actions at each of B states in one pass: obs (B, obs_dim), acts (K, B, act_dim) -> (n_critics, K, B).

        The states are repeated, not split off: computing the first layer's state part once per state and
        broadcasting it over the K actions made Cal-QL's update slower on CPU (3.90 -> 3.34 updates/s: the
        action part becomes a matmul with 7 inner columns, and the broadcast's backward adds copies), while
        repeating 31 x 256 states costs ~1 MB.
        """
        k, b, _ = acts.shape
        return self(obs.repeat(k, 1), acts.reshape(k * b, -1)).view(self.n_critics, k, b)


class ValueFunction(nn.Module):
    """State value V(s) -> (B,)."""

    def __init__(self, obs_dim: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.net = mlp(obs_dim, 1, hidden)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).squeeze(-1).float()


class DeterministicActor(nn.Module):
    """a = tanh(f(s)) in [-1, 1] (BC, TD3+BC)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden, output_activation=nn.Tanh)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).float()


class FixedStdGaussianActor(nn.Module):
    """N(tanh(f(s)), exp(log_std)) with a state-independent std, as in the IQL paper's code.

    The mean is squashed, samples are not: log-probabilities of dataset actions stay exact.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden, output_activation=nn.Tanh)
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def distribution(self, obs: Tensor) -> Normal:
        std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        return Normal(self.net(obs).float(), std, validate_args=False)  # validation would sync with the host

    def log_prob(self, obs: Tensor, act: Tensor) -> Tensor:
        return self.distribution(obs).log_prob(act).sum(-1)

    def sample(self, obs: Tensor, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Exploration sample (online fine-tuning), clipped to the action box, and its log-probability;
        `noise` (standard normal, (B, act_dim)) is drawn here when not given."""
        dist = self.distribution(obs)
        noise = torch.randn_like(dist.mean) if noise is None else noise
        act = dist.mean + dist.stddev * noise
        return act.clamp(-1.0, 1.0), dist.log_prob(act).sum(-1)

    def forward(self, obs: Tensor) -> Tensor:
        """Deterministic action: the mean."""
        return self.net(obs).float()


class TanhGaussianActor(nn.Module):
    """SAC's squashed Gaussian: a = tanh(u), u ~ N(mu(s), sigma(s)) (CQL, Cal-QL, SAC).

    With `log_std_offset` the log-std head is `multiplier * head + offset`, both learnable scalars
    starting at 1 and `log_std_offset` (the official CQL / Cal-QL policy: offset -1, so the initial
    std is about 0.37 rather than 1).
    """

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256), log_std_offset: float | None = None
    ):
        super().__init__()
        self.net = mlp(obs_dim, 2 * act_dim, hidden)  # mean and log-std heads in one matmul
        self.act_dim = act_dim
        if log_std_offset is not None:
            self.log_std_multiplier = nn.Parameter(torch.ones(()))
            self.log_std_offset = nn.Parameter(torch.tensor(float(log_std_offset)))

    def heads(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log-std) of the Gaussian before the tanh."""
        mu, log_std = self.net(obs).float().chunk(2, dim=-1)
        if hasattr(self, "log_std_offset"):
            log_std = self.log_std_multiplier * log_std + self.log_std_offset
        return mu, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: Tensor, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Reparameterised sample and its log-probability (tanh change of variables); `noise` is the
        standard normal draw, (B, act_dim), made here when not given."""
        mu, log_std = self.heads(obs)
        return _squashed_sample(mu, log_std, torch.randn_like(mu) if noise is None else noise)

    def sample_n(self, obs: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        """n samples per state from one forward pass, for standard normal `noise` (n, B, act_dim):
        actions (n, B, act_dim), log-probs (n, B)."""
        mu, log_std = self.heads(obs)
        return _squashed_sample(mu, log_std, noise)

    def log_prob(self, obs: Tensor, act: Tensor) -> Tensor:
        """Log-probability of given actions in [-1, 1] (clipped to +-LOGGED_ACTION_CLIP)."""
        mu, log_std = self.heads(obs)
        act = act.clamp(-LOGGED_ACTION_CLIP, LOGGED_ACTION_CLIP)
        u = torch.atanh(act)
        log_prob = Normal(mu, log_std.exp(), validate_args=False).log_prob(u).sum(-1)
        return log_prob - torch.log1p(-act.pow(2) + 1e-6).sum(-1)

    def forward(self, obs: Tensor) -> Tensor:
        """Deterministic action: tanh of the mean (no `heads`: its module-level clamp bounds do not script;
        `narrow`, not `chunk`: one cheap view instead of a split, which matters at deployment's batch of 1)."""
        return torch.tanh(self.net(obs).float().narrow(-1, 0, self.act_dim))


def _squashed_sample(mu: Tensor, log_std: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
    """tanh(u), u = mu + exp(log_std) * noise (noise broadcast over leading dims), with log-probs."""
    std = log_std.exp()
    u = mu + std * noise
    # Gaussian log-density from the noise directly (no Normal object), then log(1 - tanh(u)^2) stably.
    log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_prob = log_prob - (2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))).sum(-1)
    return torch.tanh(u), log_prob


def official_init_(module: nn.Module, orthogonal: bool, output_scale: float = 1e-2) -> nn.Module:
    """The official CQL / Cal-QL initialisation of an MLP (`mlp` or `EnsembleMLP`): with `orthogonal`, hidden
    weights orthogonal with gain sqrt(2) and the output layer orthogonal with gain `output_scale`; without, the
    default hidden init and an output layer shrunk by `output_scale`; biases zero either way. A critic then
    starts near Q = 0 and a policy near the action box's centre."""
    layers = [m for m in module.modules() if isinstance(m, (nn.Linear, EnsembleLinear))]
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        with torch.no_grad():
            weights = layer.weight if isinstance(layer, EnsembleLinear) else layer.weight.unsqueeze(0)
            for w in weights:  # one ensemble member (or the single layer) at a time
                if orthogonal:
                    nn.init.orthogonal_(w, gain=output_scale if last else math.sqrt(2.0))
                elif last:
                    w.mul_(output_scale)
            layer.bias.zero_()
    return module


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging target <- (1 - tau) target + tau source, fused over all tensors."""
    with torch.no_grad():
        t = list(target.parameters())
        torch._foreach_lerp_(t, list(source.parameters()), tau)


def frozen_call(module: nn.Module, *args: Tensor) -> Tensor:
    """`module(*args)` with its parameters detached: gradients reach the inputs only.

    For actor losses that backpropagate through a critic: the critic's parameter gradients would be
    computed and then discarded by its own optimiser's zero_grad. Functional (no requires_grad
    toggling), so it also runs inside a seed batch's vmap.
    """
    params = {name: p.detach() for name, p in module.named_parameters()}
    return torch.func.functional_call(module, params, args)


class VAEDecoder(nn.Module):
    """p(a | s, z): a = tanh(f(s, z)) in [-1, 1] (BCQ's generative model of the logged actions)."""

    def __init__(self, obs_dim: int, act_dim: int, latent_dim: int, hidden: Sequence[int] = (750, 750)):
        super().__init__()
        self.net = mlp(obs_dim + latent_dim, act_dim, hidden, output_activation=nn.Tanh)

    def forward(self, obs: Tensor, z: Tensor) -> Tensor:
        return self.net(torch.cat([obs, z], dim=-1)).float()


class ConditionalVAE(nn.Module):
    """BCQ's behaviour model: encoder q(z | s, a) = N(mu, exp(log_std)), decoder `VAEDecoder`."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        latent_dim: int,
        hidden: Sequence[int] = (750, 750),
        latent_clip: float = 0.5,
    ):
        super().__init__()
        self.encoder = mlp(obs_dim + act_dim, 2 * latent_dim, hidden)  # mean and log-std heads in one matmul
        self.decoder = VAEDecoder(obs_dim, act_dim, latent_dim, hidden)
        self.latent_dim = latent_dim
        self.latent_clip = latent_clip

    def encode(self, obs: Tensor, act: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_std = self.encoder(torch.cat([obs, act], dim=-1)).float().chunk(2, dim=-1)
        return mu, log_std.clamp(-4.0, 15.0)  # BCQ's clamp: keeps exp(log_std) finite

    def forward(self, obs: Tensor, act: Tensor, noise: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Reconstruction through the reparameterised posterior sample mu + std * noise (standard normal
        `noise`, (B, latent_dim)): (recon, mu, log_std)."""
        mu, log_std = self.encode(obs, act)
        return self.decoder(obs, mu + log_std.exp() * noise), mu, log_std

    def sample(self, obs: Tensor, z: Tensor) -> Tensor:
        """Actions from prior latents `z` (standard normal, (B, latent_dim)), clipped to the latent box BCQ
        trusts ([-0.5, 0.5] by default)."""
        return self.decoder(obs, z.clamp(-self.latent_clip, self.latent_clip))


class PerturbationActor(nn.Module):
    """BCQ's xi_phi(s, a): a + phi * tanh(f(s, a)), clamped to [-1, 1] (a small correction of a)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (400, 300), phi: float = 0.05):
        super().__init__()
        self.net = mlp(obs_dim + act_dim, act_dim, hidden)
        self.phi = phi

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        xi = self.phi * torch.tanh(self.net(torch.cat([obs, act], dim=-1)).float())
        return (act + xi).clamp(-1.0, 1.0)
