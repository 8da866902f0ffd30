"""A pool of worker processes serving one model.

Each worker is a separate process (crash isolation; the gateway's event loop never waits on
model code). Requests wait for an idle worker in a bounded queue and are refused at once when it
is full. A worker that dies fails only its own request and is restarted by its supervisor. A
request abandoned mid-stream (client gone) is cancelled in the worker, which is reclaimed as soon
as it acknowledges — within a token.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

from inference.errors import Busy, InvalidRequest, WorkerFailed
from inference.registry import ModelSpec
from inference.types import (
    ChatRequest,
    Chunk,
    CompletionRequest,
    Done,
    Embeddings,
    EmbedRequest,
    Event,
    Timings,
    Usage,
)

log = logging.getLogger("vagt.pool")

_TERMINAL = frozenset({"done", "embeddings", "cancelled", "error"})
_READY_TIMEOUT_S = 120.0
_STREAM_LIMIT = 64 * 1024 * 1024  # one JSON line may carry a batch of embeddings


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        assert process.stdin is not None
        assert process.stdout is not None
        self._stdin = process.stdin
        self._stdout = process.stdout

    @classmethod
    async def spawn(cls, config: dict[str, Any]) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "inference.worker", json.dumps(config),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=_STREAM_LIMIT,
        )
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), _READY_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            raise WorkerFailed("worker did not become ready") from None
        if not line:
            await process.wait()
            raise WorkerFailed(f"worker exited while loading (status {process.returncode})")
        return cls(process)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, message: dict[str, Any]) -> None:
        self._stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    async def receive(self) -> dict[str, Any]:
        line = await self._stdout.readline()
        if not line:
            raise WorkerFailed("the model worker stopped unexpectedly")
        message: dict[str, Any] = json.loads(line)
        return message

    def stop(self) -> None:
        if self.alive:
            self.process.kill()


class Pool:
    def __init__(
        self, spec: ModelSpec, path: Path, *, workers: int, threads: int, max_queue: int,
        queue_timeout: float = 60.0,
    ) -> None:
        self.spec = spec
        self.path = path
        self.name = f"{spec.name}/gguf"
        self.hardware = "cpu"  # llama.cpp without offload; hardware routing is a later issue
        self.size = workers
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self._config = {
            "path": str(path), "threads": threads, "template": spec.template,
            "num_ctx": spec.parameters.num_ctx or 2048,
        }
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._workers: set[_Worker] = set()
        self._supervisors: list[asyncio.Task[None]] = []
        self._ids = itertools.count(1)
        self._waiting = 0
        self._busy = 0
        self._closing = False
        self.load_ns = 0
        self.restarts = 0

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every worker; return once all have loaded the model."""
        started = time.perf_counter_ns()
        workers = await asyncio.gather(
            *(_Worker.spawn(self._config) for _ in range(self.size)), return_exceptions=True
        )
        failures = [w for w in workers if isinstance(w, BaseException)]
        if failures:
            for w in workers:
                if isinstance(w, _Worker):
                    w.stop()
            raise WorkerFailed(f"model '{self.spec.name}' failed to load: {failures[0]}")
        self.load_ns = time.perf_counter_ns() - started
        for worker in workers:
            assert isinstance(worker, _Worker)
            self._adopt(worker)

    def _adopt(self, worker: _Worker) -> None:
        self._workers.add(worker)
        self._idle.put_nowait(worker)
        self._supervisors.append(asyncio.create_task(self._supervise(worker)))

    async def _supervise(self, worker: _Worker) -> None:
        """Wait for the worker to exit; unless the pool is closing, start a replacement."""
        status = await worker.process.wait()
        self._workers.discard(worker)
        backoff = 0.2
        while not self._closing:
            log.warning("model %s: worker %d exited with status %s; restarting",
                        self.spec.name, worker.pid, status)
            try:
                replacement = await _Worker.spawn(self._config)
            except WorkerFailed:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            self.restarts += 1
            if self._closing:
                replacement.stop()
            else:
                self._adopt(replacement)
            return

    async def close(self) -> None:
        self._closing = True
        for worker in list(self._workers):
            worker.stop()
        for task in self._supervisors:
            task.cancel()
        await asyncio.gather(*self._supervisors, return_exceptions=True)
        await asyncio.gather(*(w.process.wait() for w in self._workers), return_exceptions=True)

    # --- state --------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return not self._closing and len(self._workers) == self.size and all(
            w.alive for w in self._workers)

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def pids(self) -> list[int]:
        return sorted(w.pid for w in self._workers if w.alive)

    # --- scheduling ----------------------------------------------------------------------------

    async def _acquire(self) -> _Worker:
        if self._idle.empty() and self._waiting >= self.max_queue:
            raise Busy(f"model '{self.spec.name}' is at capacity; retry shortly")
        self._waiting += 1
        try:
            while True:
                worker = await asyncio.wait_for(self._idle.get(), self.queue_timeout)
                if worker.alive:
                    self._busy += 1
                    return worker
        except TimeoutError:
            raise Busy(f"model '{self.spec.name}' is at capacity; retry shortly") from None
        finally:
            self._waiting -= 1

    def _release(self, worker: _Worker) -> None:
        self._busy -= 1
        if worker.alive and not self._closing:
            self._idle.put_nowait(worker)

    async def _reclaim(self, worker: _Worker, job_id: int) -> None:
        """Cancel an abandoned job and return the worker once it has stopped."""
        try:
            worker.send({"op": "cancel", "id": job_id})
            while (await worker.receive())["t"] not in _TERMINAL:
                pass
        except (WorkerFailed, OSError, ConnectionError):
            worker.stop()
        finally:
            self._release(worker)

    async def _exchange(self, job: dict[str, Any]) -> AsyncGenerator[dict[str, Any]]:
        """Run one job on an idle worker, yielding its messages up to the terminal one."""
        worker = await self._acquire()
        job_id = next(self._ids)
        finished = False
        try:
            worker.send({**job, "id": job_id})
            while True:
                message = await worker.receive()
                if message["t"] in _TERMINAL:
                    finished = True
                    if message["t"] == "error":
                        raise (InvalidRequest(message["message"]) if message["kind"] == "invalid"
                               else WorkerFailed("the model worker failed on this request"))
                yield message
                if finished:
                    return
        except WorkerFailed:
            finished = True  # a dead worker is not reclaimed; its supervisor replaces it
            raise
        finally:
            if finished:
                self._release(worker)
            else:
                # Abandoned (client gone, task cancelled): reclaim in the background.
                reclaim = asyncio.create_task(self._reclaim(worker, job_id))
                self._supervisors.append(reclaim)
                reclaim.add_done_callback(self._supervisors.remove)

    # --- jobs ------------------------------------------------------------------------------------

    async def generate(self, request: ChatRequest | CompletionRequest) -> AsyncIterator[Event]:
        stream = self._exchange(self._job(request))
        try:
            async for message in stream:
                if message["t"] == "chunk":
                    yield Chunk(message["text"])
                elif message["t"] == "done":
                    prompt_eval, eval_, total = message["timings"]
                    yield Done(
                        finish_reason=message["finish_reason"],
                        usage=Usage(*message["usage"]),
                        timings=Timings(prompt_eval_ns=prompt_eval, eval_ns=eval_, total_ns=total),
                    )
        finally:
            await stream.aclose()

    async def embed(self, request: EmbedRequest) -> Embeddings:
        started = time.perf_counter_ns()
        job = {"op": "embed", "inputs": list(request.inputs), "truncate": request.truncate}
        async for message in self._exchange(job):
            if message["t"] == "embeddings":
                elapsed = time.perf_counter_ns() - started
                return Embeddings(
                    vectors=message["vectors"], usage=Usage(prompt_tokens=message["tokens"]),
                    timings=Timings(prompt_eval_ns=elapsed, total_ns=elapsed),
                )
        raise WorkerFailed("the model worker returned no embeddings")

    def _job(self, request: ChatRequest | CompletionRequest) -> dict[str, Any]:
        """The request as a worker job, with the catalogue's defaults applied."""
        spec = self.spec
        job: dict[str, Any] = {
            "sampling": request.sampling.over(spec.parameters).model_dump(),
            "format": None if request.format is None else request.format.model_dump(),
        }
        if isinstance(request, CompletionRequest):
            return {**job, "op": "complete", "prompt": request.prompt, "suffix": request.suffix}
        messages = [m.model_dump() for m in spec.conversation(request.messages)]
        return {**job, "op": "chat", "messages": messages}
