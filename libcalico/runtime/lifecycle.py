"""Service lifecycle: resources on a stack, named root tasks, a stop event, drain, exit code.

How it works::

    run(name, wire) ─► serve():
        AsyncExitStack ──────────────────────────────────────────────┐ closed last, in reverse
          TaskGroup ───────────────────────────────────────────┐     │
            await wire(lc)        opens resources (lc.enter), spawns root tasks (lc.spawn)
            "lifecycle" reporter ready
            wait for lc.stopping  set by SIGTERM/SIGINT, lc.request_stop() or a failed task
            stop intake           on_stop hooks, newest first; readiness goes false
            drain                 wait for root tasks up to drain_timeout (second signal: at once),
                                  cancel_on_stop tasks are cancelled first, leftovers after the timeout
          ─────────────────────────────────────────────────────┘
        exit code: 0, or 1 when wiring, a root task, a stop hook or a resource close failed

Signal handlers only set the stop event. A root task that raises is logged with
its name at the task root (``task_failed``) and makes the service stop and exit 1.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from libcalico.runtime.errors import ServiceError
from libcalico.runtime.health import HealthAggregator, new_registry

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = structlog.get_logger(__name__)

T = TypeVar("T")
StopHook = Callable[[], Awaitable[None] | None]

EXIT_OK = 0
EXIT_FAILED = 1
DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Lifecycle:
    """What a service's wiring gets: the resource stack, root tasks, stop hooks and the stop event."""

    def __init__(
        self,
        service: str,
        *,
        drain_timeout: float = 10.0,
        health: HealthAggregator | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.service = service
        self.drain_timeout = drain_timeout
        self.health = health if health is not None else HealthAggregator()
        self._registry = registry
        self._registry_hooks: list[Callable[[CollectorRegistry], None]] = []
        self.stopping = asyncio.Event()
        self.stop_reason = ""
        self.exit_code = EXIT_OK
        self._forced = asyncio.Event()
        self._stack: AsyncExitStack | None = None
        self._group: asyncio.TaskGroup | None = None
        self._tasks: dict[asyncio.Task[None], bool] = {}
        self._hooks: list[tuple[str, StopHook]] = []
        self._reporter = self.health.register("lifecycle", live=True, ready=True)

    @property
    def registry(self) -> CollectorRegistry:
        """The service's metrics registry, made (and prometheus-client imported) on first use."""
        if self._registry is None:
            self._registry = new_registry()
            hooks, self._registry_hooks = self._registry_hooks, []
            for hook in hooks:
                hook(self._registry)
        return self._registry

    def with_registry(self, hook: Callable[[CollectorRegistry], None]) -> None:
        """Call ``hook`` with the metrics registry: now if it exists, else when it is first used."""
        if self._registry is not None:
            hook(self._registry)
        else:
            self._registry_hooks.append(hook)

    @property
    def stack(self) -> AsyncExitStack:
        """The stack every resource is opened on; closed in reverse after the tasks end."""
        if self._stack is None:
            raise ServiceError("the lifecycle is not running")
        return self._stack

    async def enter(self, resource: AbstractAsyncContextManager[T]) -> T:
        """Open an async context manager on the stack and return what it gives."""
        return await self.stack.enter_async_context(resource)

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any], *, cancel_on_stop: bool = False) -> asyncio.Task[None]:
        """Start a named root task; ``cancel_on_stop`` tasks are cancelled at stop instead of drained."""
        if self._group is None:
            coro.close()
            raise ServiceError("the lifecycle is not running")
        task = self._group.create_task(self._root(name, coro), name=name)
        self._tasks[task] = cancel_on_stop
        task.add_done_callback(self._forget)
        return task

    def on_stop(self, hook: StopHook, name: str | None = None) -> None:
        """Run ``hook`` (sync or async) when stopping begins, to stop intake; newest first."""
        self._hooks.append((name or str(getattr(hook, "__qualname__", repr(hook))), hook))

    def request_stop(self, reason: str = "requested") -> None:
        """Begin stopping (idempotent)."""
        if not self.stopping.is_set():
            self.stop_reason = reason
            self.stopping.set()

    def fail(self, reason: str) -> None:
        """Record a failure: the service stops and exits non-zero."""
        self.exit_code = EXIT_FAILED
        self.request_stop(reason)

    @property
    def task_names(self) -> list[str]:
        """Names of the root tasks still running."""
        return sorted(t.get_name() for t in self._tasks)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.stopping.is_set():
            log.warning("stop_forced", signal=name)
            self._forced.set()
        else:
            log.info("signal_received", signal=name)
            self.request_stop(name)

    async def _root(self, name: str, coro: Coroutine[Any, Any, Any]) -> None:
        structlog.contextvars.bind_contextvars(task=name)
        try:
            await coro
        except asyncio.CancelledError:
            log.debug("task_cancelled")
            raise
        except Exception:  # the task root: log it, stop the service, exit non-zero
            log.exception("task_failed")
            self.fail(f"task {name} failed")
        else:
            log.debug("task_finished")

    async def _shutdown(self) -> None:
        started = time.monotonic()
        self._reporter.report(live=True, ready=False, detail="stopping")
        log.info("stopping", reason=self.stop_reason, tasks=self.task_names)
        for name, hook in reversed(self._hooks):
            try:
                result = hook()
                if inspect.isawaitable(result):
                    await self._bounded(result, started)
            except Exception:  # a stop hook is a task root of its own
                log.exception("stop_hook_failed", hook=name)
                self.exit_code = EXIT_FAILED
        for task, cancel in list(self._tasks.items()):
            if cancel:
                task.cancel()
        await self._drain(started)

    async def _bounded(self, awaitable: Awaitable[Any], started: float) -> None:
        remaining = max(0.0, self.drain_timeout - (time.monotonic() - started))
        try:
            async with asyncio.timeout(remaining):  # not wait_for: 3.11's can swallow a cancellation
                await awaitable
        except TimeoutError:
            log.warning("stop_hook_timeout")

    async def _drain(self, started: float) -> None:
        forced = asyncio.ensure_future(self._forced.wait())
        try:
            for _ in range(10_000):  # tasks spawned while draining are drained too
                pending = set(self._tasks)
                remaining = self.drain_timeout - (time.monotonic() - started)
                if not pending or remaining <= 0 or self._forced.is_set():
                    break
                await asyncio.wait({*pending, forced}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        finally:
            forced.cancel()
        left = self.task_names
        if left:
            log.warning("drain_incomplete", tasks=left, timeout=self.drain_timeout, forced=self._forced.is_set())
            for task in list(self._tasks):
                task.cancel()
        else:
            log.info("drained", seconds=round(time.monotonic() - started, 3))


async def _start(lc: Lifecycle, wire: Callable[[Lifecycle], Awaitable[None]]) -> None:
    """Run the wiring; a stop requested meanwhile (SIGTERM during a long start-up) cancels it."""
    wiring = asyncio.ensure_future(wire(lc))
    stop_wait = asyncio.ensure_future(lc.stopping.wait())
    interrupted = False
    try:
        await asyncio.wait({wiring, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if not wiring.done():
            interrupted = True
            wiring.cancel()
        await wiring
    except asyncio.CancelledError:
        if not interrupted:
            raise
        log.info("startup_interrupted", reason=lc.stop_reason)
    except Exception:  # the wiring is the root of start-up: log it and stop
        log.exception("startup_failed")
        lc.fail("start-up failed")
    else:
        if not lc.stopping.is_set():
            lc._reporter.report(live=True, ready=True)
            log.info("service_started", tasks=lc.task_names)
    finally:
        stop_wait.cancel()
        if not wiring.done():
            wiring.cancel()


async def serve(
    service: str,
    wire: Callable[[Lifecycle], Awaitable[None]],
    *,
    drain_timeout: float = 10.0,
    health: HealthAggregator | None = None,
    registry: CollectorRegistry | None = None,
    signals: Iterable[signal.Signals] = DEFAULT_SIGNALS,
) -> int:
    """Run a service until it is stopped; return its exit code (0 clean, 1 failed)."""
    lc = Lifecycle(service, drain_timeout=drain_timeout, health=health, registry=registry)
    loop = asyncio.get_running_loop()
    installed = []
    for sig in signals:
        loop.add_signal_handler(sig, lc._on_signal, sig)
        installed.append(sig)
    lc._reporter.report(live=True, ready=False, detail="starting")
    try:
        async with AsyncExitStack() as stack:
            lc._stack = stack
            async with asyncio.TaskGroup() as group:
                lc._group = group
                await _start(lc, wire)
                await lc.stopping.wait()
                await lc._shutdown()
            lc._group = None
    except Exception:  # closing a resource failed; everything else was logged at its root
        log.exception("shutdown_failed")
        lc.exit_code = EXIT_FAILED
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    log.info("service_stopped", exit_code=lc.exit_code, reason=lc.stop_reason)
    return lc.exit_code


def run(
    service: str,
    wire: Callable[[Lifecycle], Awaitable[None]],
    *,
    drain_timeout: float = 10.0,
    health: HealthAggregator | None = None,
    registry: CollectorRegistry | None = None,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> int:
    """Run a service in a fresh event loop and return its exit code (for ``main() -> int``)."""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(serve(service, wire, drain_timeout=drain_timeout, health=health, registry=registry))
