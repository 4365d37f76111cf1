"""Micro-batching: face crops of requests that arrive within a few milliseconds are classified in one forward pass.

A single consumer task takes the first waiting request, gathers more for at most `max_wait_ms` (or until `max_batch`
crops), and runs one classification in a worker thread. It waits only while other requests are still being decoded
and detected (`upstream()` counts them): a lone request is classified at once, with no added latency. While that runs, the next requests queue up, so under load
batches grow by themselves and at low load a request waits at most `max_wait_ms`. Off (`enabled=False`), every request
is classified alone, in its own thread: the one-at-a-time baseline the load benchmark compares against.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

ClassifyFn = Callable[[Sequence[np.ndarray], bool], np.ndarray]


@dataclass
class _Job:
    crops: Sequence[np.ndarray]
    tta: bool
    future: asyncio.Future


@dataclass
class BatchStats:
    """Counters for /health and the benchmark: how many forward passes, how many crops in them."""

    batches: int = 0
    crops: int = 0
    largest: int = 0

    def add(self, n: int) -> None:
        self.batches += 1
        self.crops += n
        self.largest = max(self.largest, n)

    def to_dict(self) -> dict:
        return {"batches": self.batches, "crops": self.crops, "largest": self.largest,
                "mean_size": round(self.crops / self.batches, 2) if self.batches else 0.0}


class MicroBatcher:
    """`await batcher.classify(crops, tta)` -> probabilities (len(crops) x classes), batched across callers."""

    def __init__(self, classify: ClassifyFn, enabled: bool = True, max_batch: int = 32, max_wait_ms: float = 5.0):
        self._classify = classify
        self.enabled, self.max_batch, self.max_wait = enabled, max(1, max_batch), max(0.0, max_wait_ms) / 1000
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.coming = 0  # requests being decoded/detected: their crops will arrive soon, so a batch may wait for them
        # one thread runs the batches: the model is used by one batch at a time, with all its intra-op threads
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="emotune-classify")

    async def start(self) -> None:
        """Start the consumer in the running event loop (again, if an earlier loop has gone, as in some test clients)."""
        loop = asyncio.get_running_loop()
        if self.enabled and (self._task is None or self._loop is not loop or self._task.done()):
            self._loop = loop
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._run(), name="emotune-microbatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def upstream(self):
        """Context manager around a request's decode+detect: while inside, the batcher knows crops are coming."""
        import contextlib

        @contextlib.contextmanager
        def cm():
            self.coming += 1
            try:
                yield
            finally:
                self.coming -= 1

        return cm()

    @property
    def waiting(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def classify(self, crops: Sequence[np.ndarray], tta: bool = False) -> np.ndarray:
        if not crops:
            return np.zeros((0, 0), np.float32)
        if not self.enabled:
            self.stats.add(len(crops))
            return await asyncio.to_thread(self._classify, crops, tta)
        if self._task is None or self._loop is not asyncio.get_running_loop():
            await self.start()
        job = _Job(crops, tta, asyncio.get_running_loop().create_future())
        await self._queue.put(job)
        return await job.future

    async def _gather(self) -> list[_Job]:
        loop = asyncio.get_running_loop()
        jobs = [await self._queue.get()]
        n = len(jobs[0].crops)
        deadline = loop.time() + self.max_wait
        while n < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - loop.time()
                if left <= 0 or not self.coming:  # nobody else is on the way: do not make this batch wait
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), left)
                except asyncio.TimeoutError:
                    break
            jobs.append(job)
            n += len(job.crops)
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._gather()
            for tta in (False, True):  # TTA changes the computation: such requests are batched among themselves
                group = [j for j in jobs if j.tta == tta and not j.future.done()]  # a timed-out caller is gone
                if not group:
                    continue
                crops = [c for j in group for c in j.crops]
                try:
                    probs = await loop.run_in_executor(self._pool, self._classify, crops, tta)
                except Exception as exc:  # noqa: BLE001 - handed to every caller of this batch
                    for j in group:
                        if not j.future.done():
                            j.future.set_exception(exc)
                    continue
                self.stats.add(len(crops))
                k = 0
                for j in group:
                    if not j.future.done():
                        j.future.set_result(probs[k:k + len(j.crops)])
                    k += len(j.crops)
