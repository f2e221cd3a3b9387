"""Where candidate evaluations run: in this process, in local processes, or on a Ray cluster.

An executor maps a module-level function over picklable items, in order. ``local`` with one job calls the function
here; with more it uses a ``spawn`` process pool (fresh interpreters: forking a process that has run PyTorch can
deadlock in OpenMP). ``ray`` submits one Ray task per item (``ray.init()`` connects to ``RAY_ADDRESS`` when set,
else starts a local Ray); Ray is optional and only imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from compiler.errors import MccError

T = TypeVar("T")
R = TypeVar("R")
EXECUTORS = ("local", "ray")


class Executor(Protocol):
    """Maps ``fn`` over ``items``; results in the order of the items."""

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """Apply ``fn`` to every item."""
        ...

    def close(self) -> None:
        """Release workers."""
        ...


class LocalExecutor:
    """This process (``jobs == 1``) or a pool of ``jobs`` spawned local processes."""

    def __init__(self, jobs: int = 1) -> None:
        if jobs < 1:
            raise MccError(f"--jobs must be >= 1, got {jobs}")
        self.jobs = jobs
        self._pool: Any = None

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """Apply ``fn`` to every item."""
        if self.jobs == 1 or len(items) < 2:
            return [fn(i) for i in items]
        if self._pool is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(self.jobs, mp_context=mp.get_context("spawn"))
        return list(self._pool.map(fn, items))

    def close(self) -> None:
        """Shut the pool down."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def _apply(fn: Callable[[T], R], item: T) -> R:
    return fn(item)


class RayExecutor:
    """One Ray task per item (any picklable callable: a Ray task of :func:`_apply`, so builtins work too)."""

    def __init__(self) -> None:
        try:
            import ray
        except ImportError:
            raise MccError("--executor ray needs Ray, which is not installed (pip install 'ray[default]'), "
                           "or use --executor local") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(ignore_reinit_error=True, log_to_driver=False)

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """Apply ``fn`` to every item as Ray tasks."""
        remote = self.ray.remote(_apply)
        return list(self.ray.get([remote.remote(fn, i) for i in items]))

    def close(self) -> None:
        """Nothing to release (the Ray runtime stays up for the process)."""


def make_executor(kind: str, jobs: int = 1) -> Executor:
    """``local`` (``jobs`` processes) or ``ray``; one clear error for anything else or a missing Ray."""
    if kind == "local":
        return LocalExecutor(jobs)
    if kind == "ray":
        return RayExecutor()
    raise MccError(f"unknown executor {kind!r}: choose {' or '.join(EXECUTORS)}")
