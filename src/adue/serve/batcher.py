"""Micro-batching: concurrent requests share one model call.

Each request puts its texts on a queue and awaits a future. One background task takes the
first waiting request, then keeps collecting for at most ``max_wait_s`` seconds or until
``max_batch`` texts are gathered (a request that would overflow the batch waits for the next
one, so a batch never exceeds ``max_batch`` texts), runs ``predict_fn`` on all the texts in a
single worker thread (off the event loop, so the service keeps answering), and hands each
request its own slice of the results.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MicroBatcher"]

logger = logging.getLogger(__name__)

PredictFn = Callable[[list[str]], list[dict[str, Any]]]


@dataclass
class _Request:
    texts: list[str]
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Group concurrent ``submit`` calls into batches of at most ``max_batch`` texts.

    ``predict_fn(texts) -> list[dict]`` (one dict per text, in order) runs in one dedicated
    thread, never two batches at once. ``batches_run`` and ``texts_run`` count the work done.
    """

    def __init__(self, predict_fn: PredictFn, *, max_batch: int = 64, max_wait_s: float = 0.005) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"The 'max_batch' parameter of MicroBatcher must be an int >= 1. Got {max_batch!r} instead.")
        if not isinstance(max_wait_s, (int, float)) or not 0 <= max_wait_s <= 1:
            raise ValueError(
                f"The 'max_wait_s' parameter of MicroBatcher must be a number in [0, 1] seconds. Got {max_wait_s!r} instead."
            )
        self.predict_fn = predict_fn
        self.max_batch = max_batch
        self.max_wait_s = float(max_wait_s)
        self.batches_run = 0
        self.texts_run = 0
        self._queue: asyncio.Queue[_Request] | None = None
        self._carry: _Request | None = None
        self._task: asyncio.Task | None = None
        self._pool: ThreadPoolExecutor | None = None

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Start the background batching task (call from the running event loop)."""
        self._queue = asyncio.Queue()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="adue-model")
        self._task = asyncio.create_task(self._loop(), name="adue-micro-batcher")

    async def stop(self) -> None:
        """Finish the requests already queued, then stop the task and the model thread."""
        if self._task is None:
            return
        while self._queue is not None and (not self._queue.empty() or self._carry is not None):
            await asyncio.sleep(0.001)
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    # ------------------------------------------------------------------- public
    async def submit(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Predictions for ``texts`` (at most ``max_batch``), computed in a shared batch."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.submit called before start().")
        if len(texts) > self.max_batch:
            raise ValueError(f"At most {self.max_batch} texts per request; got {len(texts)}.")
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(list(texts), fut))
        return await fut

    # ----------------------------------------------------------------- internals
    async def _next(self, timeout: float | None) -> _Request | None:
        if self._carry is not None:
            req, self._carry = self._carry, None
            return req
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            return self._queue.get_nowait() if not self._queue.empty() else None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def _collect(self) -> list[_Request]:
        loop = asyncio.get_running_loop()
        batch = [await self._next(None)]
        n = len(batch[0].texts)
        deadline = loop.time() + self.max_wait_s
        while n < self.max_batch:
            req = await self._next(deadline - loop.time())
            if req is None:
                break
            if n + len(req.texts) > self.max_batch:
                self._carry = req
                break
            batch.append(req)
            n += len(req.texts)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = [r for r in batch if not r.future.cancelled()]
            texts = [t for r in live for t in r.texts]
            if not texts:
                continue
            try:
                results = await loop.run_in_executor(self._pool, self.predict_fn, texts)
                if len(results) != len(texts):
                    raise RuntimeError(f"predict_fn returned {len(results)} results for {len(texts)} texts")
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                logger.exception("prediction failed for a batch of %d texts", len(texts))
                for r in live:
                    if not r.future.done():
                        r.future.set_exception(exc)
                continue
            self.batches_run += 1
            self.texts_run += len(texts)
            start = 0
            for r in live:
                if not r.future.done():
                    r.future.set_result(results[start : start + len(r.texts)])
                start += len(r.texts)
