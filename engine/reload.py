"""Hot reload: a changed flow set is validated whole and swapped in atomically, or refused."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from engine.actions import REGISTRY
from engine.actions.registry import ActionRegistry
from engine.flows.findings import FlowSetInvalid
from engine.flows.model import FlowSet
from engine.flows.schema import ValidFlowCache
from engine.load import SUFFIXES, LoadResult, load_flow_set

log = logging.getLogger(__name__)


class FlowHolder:
    """Holds the running flow set; the engine reads `current` once per event."""

    def __init__(self, paths: Sequence[Path], registry: ActionRegistry = REGISTRY, *,
                 schema_cache: ValidFlowCache | None = None) -> None:
        self.paths = list(paths)
        self.registry = registry
        self.schema_cache = schema_cache
        self._current: FlowSet | None = None
        self._lock = asyncio.Lock()
        self.refusals = 0
        self.reloads = 0  # reloads that swapped a new set in (for metrics, with refusals)

    @property
    def current(self) -> FlowSet:
        if self._current is None:
            raise RuntimeError("no flow set loaded yet")
        return self._current

    def load(self) -> FlowSet:
        """First load at start: an invalid set is fatal, with every error listed."""
        result = load_flow_set(self.paths, self.registry, schema_cache=self.schema_cache)
        if result.flow_set is None:
            raise FlowSetInvalid(result.errors or result.findings)
        for finding in result.findings:
            log.warning("flow lint: %s", finding)
        self._current = result.flow_set
        log.info("flow set %s loaded: %d flows, %d states", result.flow_set.version,
                 len(result.flow_set.flows), len(result.flow_set.states))
        return result.flow_set

    async def reload(self) -> LoadResult:
        """Validate the files again; swap only if the whole set is valid."""
        async with self._lock:
            started = time.perf_counter()
            result = await asyncio.to_thread(partial(load_flow_set, self.paths, self.registry,
                                                     schema_cache=self.schema_cache))
            took = (time.perf_counter() - started) * 1000
            if result.flow_set is None:
                self.refusals += 1
                log.error("flow reload refused (%d errors); the previous flow set keeps running",
                          len(result.errors))
                for finding in result.errors:
                    log.error("flow lint: %s", finding)
                return result
            previous = self._current.version if self._current else None
            self._current = result.flow_set
            self.reloads += 1
            log.info("flow set reloaded in %.0f ms: %s -> %s", took, previous, result.flow_set.version)
            return result

    def fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        """Names, sizes and mtimes of the flow files, to notice edits without reading them."""
        entries: list[tuple[str, int, int]] = []
        for path in self.paths:
            candidates = [p for p in path.iterdir() if p.suffix in SUFFIXES] if path.is_dir() else [path]
            for p in candidates:
                try:
                    st = p.stat()
                except OSError:
                    continue
                entries.append((str(p), st.st_size, st.st_mtime_ns))
        return tuple(sorted(entries))

    async def watch(self, interval: float = 2.0) -> None:
        """Reload whenever the files change (polling: no extra dependency, works on any FS)."""
        seen = self.fingerprint()
        while True:
            await asyncio.sleep(interval)
            try:
                now = self.fingerprint()
                if now != seen:
                    seen = now
                    await self.reload()
            except OSError as exc:  # a directory that vanished for a moment: try again next time
                log.error("watching the flows failed: %s", exc)
