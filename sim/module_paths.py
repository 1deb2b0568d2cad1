"""`module:name` paths, the way configs name a user's own functions and classes."""

from __future__ import annotations

import importlib
from typing import Any


def load_object(path: str, key: str) -> Any:
    """The object at `module:attr`; ValueError naming the config `key` when it cannot be imported."""
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{key}={path!r} is not of the form module:name")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{key}={path!r}: cannot import {attr!r} from {module!r} ({err})") from None
