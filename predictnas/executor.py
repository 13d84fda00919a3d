"""Executors run independent trials (subnet evaluations, verify's retraining) and hand results back.

Contract (:class:`Executor`): ``map_unordered(task, items)`` calls ``task(item)`` for every item, in
worker processes that were each prepared once by ``setup(*setup_args)`` (load a supernet, cache data),
and yields ``(item, result)`` pairs as they finish, in any order. The caller, the driver, is the only
one to write results down, so a store has a single writer per run. Closing the generator early (or a
``KeyboardInterrupt``) stops the workers; items not yielded were not finished.

``LocalExecutor`` uses processes on this machine (``workers=1`` runs in this process, no pool). A Ray
executor for a cluster plugs in behind the same contract.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterable, Iterator

import torch


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
