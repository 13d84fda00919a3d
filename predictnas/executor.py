"""Executors run independent trials (subnet evaluations, verify's retraining) and hand results back.

Contract (:class:`Executor`): ``map_unordered(task, items)`` calls ``task(item)`` for every item, in
worker processes that were each prepared once by ``setup(*setup_args)`` (load a supernet, cache data),
and yields ``(item, result)`` pairs as they finish, in any order. The caller, the driver, is the only
one to write results down, so a store has a single writer per run. Closing the generator early (or a
``KeyboardInterrupt``) stops the workers; items not yielded were not finished.

``LocalExecutor`` uses processes on this machine (``workers=1`` runs in this process, no pool).
``RayExecutor`` runs the same tasks on the actors of an existing Ray cluster (``pip install
'predictnas[ray]'``): one actor per ``cpus_per_worker`` CPUs of the cluster, each prepared once; an actor
whose process dies is restarted (prepared again) and its unfinished tasks are retried. Every node needs
predictnas installed and must see the run's files at the same paths (one machine, or a shared file system).
:func:`make_executor` picks one of the two from the command line's ``--workers`` and ``--ray-address``.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterable, Iterator

import torch

from .errors import PredictnasError, one_line


class Executor:
    """Base class; see the module docstring for the contract."""

    def map_unordered(self, task: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        raise NotImplementedError


def _prepare(threads: int, setup: Callable | None, setup_args: tuple) -> None:
    torch.set_num_threads(threads)
    if setup is not None:
        setup(*setup_args)


class LocalExecutor(Executor):
    """``workers`` local processes, each with ``cores // workers`` torch threads."""

    def __init__(self, workers: int = 1, setup: Callable | None = None, setup_args: tuple = (),
                 cores: int | None = None):
        self.workers = max(1, workers)
        self.setup, self.setup_args = setup, setup_args
        self.threads = max(1, (cores or os.cpu_count() or 1) // self.workers)

    def map_unordered(self, task, items):
        items = list(items)
        if self.workers == 1:
            previous = torch.get_num_threads()
            _prepare(self.threads, self.setup, self.setup_args)
            try:
                for item in items:
                    yield item, task(item)
            finally:
                torch.set_num_threads(previous)
            return
        # spawn: a forked child would inherit torch's thread pools and this process's open files
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_prepare,
                                   initargs=(self.threads, self.setup, self.setup_args))
        try:
            pending = {}
            queue = iter(items)
            for item in queue:  # keep each worker one item ahead, so a kill loses little
                pending[pool.submit(task, item)] = item
                if len(pending) >= 2 * self.workers:
                    break
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    item = pending.pop(future)
                    yield item, future.result()
                    nxt = next(queue, None)
                    if nxt is not None:
                        pending[pool.submit(task, nxt)] = nxt
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


CACHE_VARIABLES = ("PREDICTNAS_CACHE", "XDG_CACHE_HOME")


class RayExecutor(Executor):
    """Tasks on the actors of the Ray cluster at ``address`` (``auto``, ``host:port`` or ``ray://host:port``)."""

    def __init__(self, address: str, setup: Callable | None = None, setup_args: tuple = (),
                 cpus_per_worker: int = 1, retries: int = 3):
        self.ray = import_ray()
        if not self.ray.is_initialized():
            try:
                # the driver's cache (corpus and features) is where the workers look too
                env = {k: os.environ[k] for k in CACHE_VARIABLES if k in os.environ}
                self.ray.init(address=address, logging_level="ERROR", log_to_driver=False,
                              runtime_env={"env_vars": env} if env else None)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise PredictnasError(f"no Ray cluster at {address!r} ({one_line(e, 160)}); start one with "
                                      "`ray start --head`, or run without --ray-address") from None
        self.setup, self.setup_args = setup, setup_args
        self.cpus_per_worker, self.retries = max(1, cpus_per_worker), retries

    def map_unordered(self, task, items):
        ray = self.ray
        items = list(items)
        if not items:
            return
        slots = int(ray.cluster_resources().get("CPU", 1) // self.cpus_per_worker)
        actor = ray.remote(num_cpus=self.cpus_per_worker, max_restarts=-1,
                           max_task_retries=self.retries)(_RayWorker)
        workers = [actor.remote(self.cpus_per_worker, self.setup, self.setup_args)
                   for _ in range(max(1, min(slots, len(items))))]
        pending, queue = {}, iter(items)
        try:
            for worker in workers * 2:  # each actor one task ahead, so it never waits on the driver
                nxt = next(queue, None)
                if nxt is None:
                    break
                pending[worker.run.remote(task, nxt)] = (worker, nxt)
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                worker, item = pending.pop(done[0])
                try:
                    result = ray.get(done[0])
                except ray.exceptions.RayTaskError as e:  # the task itself failed: its own error, as here
                    cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else None
                    raise cause if isinstance(cause, PredictnasError) else PredictnasError(
                        f"a Ray task failed: {one_line(cause or e, 200)}") from None
                except ray.exceptions.RayError as e:  # the retries ran out (a worker kept dying)
                    raise PredictnasError(f"a Ray worker failed {self.retries + 1} times: {one_line(e, 200)}") from None
                yield item, result
                nxt = next(queue, None)
                if nxt is not None:
                    pending[worker.run.remote(task, nxt)] = (worker, nxt)
        finally:
            for worker in workers:
                ray.kill(worker)


class _RayWorker:
    """One Ray actor: prepared once (a supernet loaded, data cached), then runs tasks."""

    def __init__(self, threads: int, setup: Callable | None, setup_args: tuple):
        _prepare(threads, setup, setup_args)

    def run(self, task: Callable, item: Any) -> Any:
        return task(item)


def import_ray():
    try:
        import ray
    except ImportError:
        raise PredictnasError("--ray-address needs Ray: pip install 'predictnas[ray]'") from None
    return ray


def make_executor(workers: int = 1, ray_address: str | None = None, setup: Callable | None = None,
                  setup_args: tuple = ()) -> Executor:
    """Ray actors on the cluster at ``ray_address`` where one is given, else ``workers`` local processes."""
    if ray_address:
        return RayExecutor(ray_address, setup, setup_args)
    return LocalExecutor(workers, setup, setup_args)
