"""The one exception the data layer raises for bad input files."""

from __future__ import annotations

import os


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or inconsistent.

    Subclasses ValueError so callers that already guard against bad values keep working; the
    message always names the file and, where one is to blame, the key inside it, so a user
    can find the problem without a traceback into h5py.
    """

    def __init__(self, path: str | os.PathLike, key: str | None, problem: str) -> None:
        self.path = str(path)
        self.key = key
        self.problem = problem
        where = f"{self.path}" if key is None else f"{self.path} [key {key!r}]"
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):  # keep the exception picklable (multiprocessing, pytest-xdist)
        return (type(self), (self.path, self.key, self.problem))
