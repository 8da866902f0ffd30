"""Which models are resident: loads pools on demand, unloads them after ``keep_alive``.

At most ``max_loaded`` pools are resident; loading another evicts the least recently used idle
one. A pool in use is never evicted; when every resident pool is busy, the request is refused
as Busy rather than waiting behind a model it does not need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from inference.errors import Busy
from inference.pool import Pool
from inference.registry import Catalogue, ModelSpec, verified_path

log = logging.getLogger("vagt.models")

FOREVER = float("inf")


@dataclass
class PoolSettings:
    workers: int = 1
    threads: int = 2
    max_queue: int = 8
    queue_timeout: float = 60.0
    keep_alive: float = 300.0  # seconds an idle model stays loaded; negative: forever
    max_loaded: int = 2


@dataclass
class _Resident:
    pool: Pool
    active: int = 0
    last_used: float = field(default_factory=time.monotonic)
    expires_at: float = FOREVER  # monotonic; FOREVER while in use or kept forever
    expires_wall: float | None = None  # the same moment on the wall clock, for /api/ps


@dataclass(frozen=True)
class Lease:
    pool: Pool
    load_ns: int  # time this request spent loading the model (0 when it was resident)


class PoolManager:
    def __init__(self, catalogue: Catalogue, models_dir: Path, settings: PoolSettings) -> None:
        self.catalogue = catalogue
        self.models_dir = models_dir
        self.settings = settings
        self._resident: dict[str, _Resident] = {}
        self._loading: dict[str, asyncio.Task[Pool]] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._load_lock = asyncio.Lock()  # one load at a time, so eviction sees a true count

    async def start(self, preload: list[str]) -> None:
        self._reaper = asyncio.create_task(self._reap())
        for name in preload:
            spec = self.catalogue.resolve(name)
            await self._load(spec)
            self._set_expiry(self._resident[spec.name], FOREVER)

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for task in self._loading.values():
            task.cancel()
        await asyncio.gather(*(r.pool.close() for r in self._resident.values()))
        self._resident.clear()

    @contextlib.asynccontextmanager
    async def lease(self, spec: ModelSpec, keep_alive: float | None) -> AsyncIterator[Lease]:
        """Use ``spec``'s pool for one request; it stays resident at least until released."""
        resident = self._resident.get(spec.name)
        load_ns = 0
        if resident is None:
            started = time.perf_counter_ns()
            await self._load(spec)
            resident = self._resident[spec.name]
            load_ns = time.perf_counter_ns() - started
        resident.active += 1
        resident.expires_at = FOREVER
        try:
            yield Lease(resident.pool, load_ns)
        finally:
            resident.active -= 1
            resident.last_used = time.monotonic()
            if resident.active == 0:
                self._set_expiry(
                    resident, self.settings.keep_alive if keep_alive is None else keep_alive)

    def _set_expiry(self, resident: _Resident, keep_alive: float) -> None:
        if keep_alive < 0:
            resident.expires_at, resident.expires_wall = FOREVER, None
        else:
            resident.expires_at = time.monotonic() + keep_alive
            resident.expires_wall = time.time() + keep_alive
        if keep_alive == 0:
            self._wake_reaper()

    async def _load(self, spec: ModelSpec) -> None:
        task = self._loading.get(spec.name)
        if task is None:
            task = asyncio.create_task(self._start_pool(spec))
            self._loading[spec.name] = task
            task.add_done_callback(lambda _: self._loading.pop(spec.name, None))
        await asyncio.shield(task)

    async def _start_pool(self, spec: ModelSpec) -> Pool:
        path = await asyncio.to_thread(verified_path, spec, self.models_dir)
        s = self.settings
        pool = Pool(spec, path, workers=s.workers, threads=s.threads, max_queue=s.max_queue,
                    queue_timeout=s.queue_timeout)
        async with self._load_lock:
            await self._make_room()
            await pool.start()
            self._resident[spec.name] = _Resident(pool)
        log.info("model %s loaded in %.2f s (%d workers)", spec.name, pool.load_ns / 1e9, s.workers)
        return pool

    async def _make_room(self) -> None:
        while len(self._resident) >= self.settings.max_loaded:
            idle = [(r.last_used, name) for name, r in self._resident.items() if r.active == 0]
            if not idle:
                raise Busy("every loaded model is busy; retry shortly", retry_after=2)
            await self.unload(min(idle)[1])

    async def unload(self, name: str) -> None:
        resident = self._resident.pop(name, None)
        if resident is not None:
            log.info("model %s unloaded", name)
            await resident.pool.close()

    # --- keep-alive ----------------------------------------------------------------------------

    def _wake_reaper(self) -> None:
        self._wakeup.set()

    async def _reap(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), 1.0)
            self._wakeup.clear()
            now = time.monotonic()
            for name, resident in list(self._resident.items()):
                if resident.active == 0 and resident.expires_at <= now:
                    await self.unload(name)

    # --- state ----------------------------------------------------------------------------------

    def resident(self) -> list[tuple[Pool, float | None]]:
        """Loaded pools with the wall-clock time each expires (None: never)."""
        return [(r.pool, r.expires_wall) for r in self._resident.values()]

    def pool(self, name: str) -> Pool | None:
        resident = self._resident.get(name)
        return None if resident is None else resident.pool
