"""Load an exported policy (`.pt` TorchScript or `.pt2` AOTInductor) with nothing but torch.

Both formats come back behind one interface: call it on an observation, `reset()` at
episode start, read `.metadata`. Timing supervision (a watchdog that holds a safe action
when a command is late) is the controller loop's job; nothing here can provide it.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Union

import torch
from torch import Tensor

METADATA_FILE = "metadata.json"  # TorchScript extra file / AOTInductor metadata key


@contextlib.contextmanager
def quiet_torchscript_deprecation() -> Iterator[None]:
    """TorchScript is deprecated upstream but is still what libtorch C++ loads; we use it knowingly."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\..* is deprecated", category=DeprecationWarning)
        yield


class LoadedPolicy:
    """A stateful single-robot policy: `policy(obs) -> action`.

    Accepts a torch tensor or anything `torch.as_tensor` takes (numpy arrays, lists) of
    shape (obs_dim,); returns a tensor for tensor input and a numpy float32 array otherwise.
    """

    def __init__(self, path: Path, metadata: Dict[str, Any]) -> None:
        self.path = path
        self.metadata = metadata
        self.obs_dim = int(metadata["observation_space"]["shape"][0])
        self.act_dim = int(metadata["action_space"]["shape"][0])
        self.intervention_kinds: List[str] = list(metadata["safety_intervention_kinds"])

    @property
    def format(self) -> str:
        return str(self.metadata["format"])

    def __call__(self, obs: Any) -> Any:
        as_tensor = isinstance(obs, Tensor)
        x = (obs if as_tensor else torch.as_tensor(obs)).to(device="cpu", dtype=torch.float32).contiguous()
        if x.shape != (self.obs_dim,):
            raise ValueError(f"expected one observation of shape ({self.obs_dim},), got {tuple(x.shape)}")
        with torch.no_grad():
            action = self.act(x)
        return action if as_tensor else action.numpy()

    def act(self, obs: Tensor) -> Tensor:
        """Fast path: contiguous CPU float32 tensor of shape (obs_dim,) in, fresh tensor out; no checks."""
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def intervention_counts(self) -> Tensor:
        raise NotImplementedError

    def interventions(self) -> Dict[str, int]:
        """Steps since the last reset on which the safety filter changed the action, per kind."""
        return dict(zip(self.intervention_kinds, (int(c) for c in self.intervention_counts().tolist())))


class TorchScriptPolicy(LoadedPolicy):
    """`.pt`: the scripted `DeployedPolicy`; its filter state lives in the module's buffers."""

    def __init__(self, path: Path) -> None:
        extra = {METADATA_FILE: ""}
        with quiet_torchscript_deprecation():
            self.module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        super().__init__(path, _parse_metadata(extra[METADATA_FILE], path))
        self.module.eval()

    def act(self, obs: Tensor) -> Tensor:
        return self.module(obs)

    def reset(self) -> None:
        self.module.reset()

    def intervention_counts(self) -> Tensor:
        return self.module.safety.intervention_counts.clone()


class AOTInductorPolicy(LoadedPolicy):
    """`.pt2`: a pure function `(obs, *state) -> (action, *state)`; the state is held here."""

    def __init__(self, path: Path) -> None:
        model = torch._inductor.aoti_load_package(str(path))
        super().__init__(path, _parse_metadata(model.get_metadata().get(METADATA_FILE, ""), path))
        self._runner = model.loader  # boxed_run directly: AOTICompiledModel.__call__ re-parses specs every call
        self._initial_prev = torch.tensor(self.metadata["interface"]["initial_prev_action"], dtype=torch.float32)
        self.reset()

    def act(self, obs: Tensor) -> Tensor:
        action, self._prev, self._has_prev, self._counts = self._runner.boxed_run(
            [obs, self._prev, self._has_prev, self._counts]
        )
        return action.clone()  # outputs may alias the state we feed back next step

    def reset(self) -> None:
        self._prev = self._initial_prev.clone()
        self._has_prev = torch.zeros((), dtype=torch.bool)
        self._counts = torch.zeros(len(self.intervention_kinds), dtype=torch.long)

    def intervention_counts(self) -> Tensor:
        return self._counts.clone()


def _parse_metadata(text: str, path: Path) -> Dict[str, Any]:
    if not text:
        raise ValueError(f"{path} has no {METADATA_FILE}: not a policy written by deploy.export_policy")
    return json.loads(text)


def load_policy(path: Union[str, Path]) -> LoadedPolicy:
    """Load `.pt` (TorchScript) or `.pt2` (AOTInductor package) by file suffix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no exported policy at {path}")
    if path.suffix == ".pt":
        return TorchScriptPolicy(path)
    if path.suffix == ".pt2":
        return AOTInductorPolicy(path)
    raise ValueError(f"unknown policy format {path.suffix!r} for {path}; expected .pt or .pt2")
