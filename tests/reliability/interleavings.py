"""A small model checker for the store-epoch protocol, over the real code.

The real `fscas.gc.collect` and `fscas.commit.commit` run as tasks on one event loop whose clock is
virtual, against a shared in-memory bucket whose every request waits for the scheduler's turn and
then happens at once (a request is atomic on the server; what varies is which one lands first, and
how late). At each point where every task waits, the explorer picks what happens next: one of the
waiting requests lands, or the clock moves to the next timer (a stalled task, a sleeping poll). A
request waits at most `max_delay` of virtual time: the protocol assumes a request the client gave up
on lands within `window(lease)` or never.

Exploration is exhaustive: depth first, each schedule replayed from scratch, with every state seen
before cut off. A task's behaviour is a function of what it observed (each answer, and the clock
when it came), so a state is the bucket's contents, the clock and each task's observations; two
schedules that only reorder independent requests meet in one state.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import hashlib
import itertools
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import attrs

from fscas.backends.base import Body, Capabilities, ObjectInfo, check_send_by, chunks_of
from fscas.errors import ObjectExists, ObjectNotFound

PROCESS: contextvars.ContextVar[str] = contextvars.ContextVar("process")


class Ids:
    """A stand-in for `uuid` whose `uuid4().hex` is `<process>-<n>`: the same in every replay."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def uuid4(self) -> Any:
        process = PROCESS.get("-")
        self.counts[process] = n = self.counts.get(process, 0) + 1
        return types.SimpleNamespace(hex=f"{process}-{n}")


IDS = Ids()


class SyncExecutor(concurrent.futures.ThreadPoolExecutor):
    """`asyncio.to_thread` without threads: the call runs at once, so replays are deterministic."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:  # type: ignore[override]
        f: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as e:
            f.set_exception(e)
        return f


class VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when the explorer moves it."""

    now = 0.0

    def time(self) -> float:
        return self.now


@attrs.define
class Gate:
    """A request waiting for its turn: `action` is what the server does when it lands."""

    process: str
    op: str
    key: str
    since: float
    action: Callable[[], Any]
    future: asyncio.Future[Any]


class Bucket:
    """The server: objects by key, each tagged by its content's MD5 (S3's single-part ETag)."""

    def __init__(self, objects: Mapping[str, bytes]) -> None:
        self.objects = dict(objects)
        self.gates: list[Gate] = []
        self.seen: dict[str, list[tuple[Any, ...]]] = {}
        self.draining = False  # a schedule cut short: every request fails, so that its tasks end

    async def turn(self, op: str, key: str, action: Callable[[], Any]) -> Any:
        """Wait for the scheduler to land this request; what `action` returned (or raised) then."""
        if self.draining:
            raise asyncio.CancelledError
        loop = asyncio.get_running_loop()
        gate = Gate(PROCESS.get(), op, key, loop.time(), action, loop.create_future())
        self.gates.append(gate)
        try:
            outcome = await gate.future
        except asyncio.CancelledError:  # the caller gave up on the request (a timeout): it never lands
            if gate in self.gates:
                self.gates.remove(gate)
            raise
        self.seen.setdefault(gate.process, []).append((op, key, _shape(outcome), loop.time()))
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def land(self, gate: Gate, *, resume_at: float | None = None) -> None:
        """The request happens now; its caller hears of it now, or at `resume_at` (it was stopped)."""
        self.gates.remove(gate)
        try:
            outcome = gate.action()
        except (ObjectExists, ObjectNotFound) as e:
            outcome = e
        if resume_at is None:
            gate.future.set_result(outcome)
        else:
            loop = asyncio.get_running_loop()
            loop.call_at(resume_at, lambda: gate.future.done() or gate.future.set_result(outcome))


def _shape(outcome: Any) -> Any:
    """An answer as the state records it: a listing as a set, an error as its type and message."""
    if isinstance(outcome, BaseException):
        return (type(outcome).__name__, str(outcome))
    return outcome


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class SteppedBackend:
    """A `Backend` (and `Swappable`) over the shared `Bucket`: every request waits for its turn."""

    capabilities = Capabilities(create_only=True, root="folder")
    url = "memory://model"

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket

    def _found(self, key: str) -> bytes:
        data = self.bucket.objects.get(key)
        if data is None:
            raise ObjectNotFound(f"{self.url}: {key}: not found")
        return data

    async def head(self, key: str) -> ObjectInfo:
        return ObjectInfo(key=key, size=len(await self.bucket.turn("head", key, lambda: self._found(key))))

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        data: bytes = await self.bucket.turn("get", key, lambda: self._found(key))
        return data[start:end]

    async def get_tagged(self, key: str) -> tuple[bytes, str]:
        data: bytes = await self.bucket.turn("get", key, lambda: self._found(key))
        return data, _md5(data)

    async def put(self, key: str, data: Body, *, metadata: Mapping[str, str] | None = None,
                  if_absent: bool = False) -> ObjectInfo:
        body = b"".join([c async for c in chunks_of(data)])  # read (and checked) before the request goes out
        await self.bucket.turn("put", key, lambda: self._write(key, body, "absent" if if_absent else None))
        return ObjectInfo(key=key, size=len(body))

    async def put_tagged(self, key: str, data: bytes, *, tag: str | None) -> str:
        await self.bucket.turn("swap", key, lambda: self._write(key, data, tag or "absent"))
        return _md5(data)

    def _write(self, key: str, body: bytes, condition: str | None) -> None:
        now = self.bucket.objects.get(key)
        if condition is not None and (now is not None if condition == "absent" else
                                      now is None or _md5(now) != condition):
            raise ObjectExists(f"{self.url}: {key}: precondition failed")
        self.bucket.objects[key] = body

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        found = await self.bucket.turn("list", prefix, lambda: sorted(
            (k, len(v)) for k, v in self.bucket.objects.items() if k.startswith(prefix)))
        for key, size in found:
            yield ObjectInfo(key=key, size=size, last_modified=0.0)

    async def delete(self, key: str) -> None:
        check_send_by(self.url, key)  # the request goes out with the gate: the last moment to refuse it
        await self.bucket.turn("delete", key, lambda: self.bucket.objects.pop(key, None) and None)

    async def aclose(self) -> None:
        return None


Process = Callable[[SteppedBackend], Awaitable[Any]]


@attrs.frozen
class Run:
    """One complete schedule: the choices made, what each process returned (or raised), the bucket."""

    choices: tuple[int, ...]
    outcomes: Mapping[str, Any]
    objects: Mapping[str, bytes]
    steps: tuple[str, ...]


class Cut(Exception):
    """The schedule reached a state explored before."""


@attrs.define
class Explorer:
    """Every schedule of `processes` from `objects`, up to states seen before."""

    processes: Mapping[str, Process]
    objects: Mapping[str, bytes]
    max_delay: float
    """How late a request may land after it was sent (the protocol's assumption)."""
    stop: float
    """How long a stopped process stays stopped (SIGSTOP between an answer and its next step)."""
    stops: int = 1
    """Processes stopped per schedule, at most."""
    delays: int = 1
    """Requests landing late per schedule, at most (the clock moving on while one is in flight)."""
    late: frozenset[str] = frozenset({"delete"})
    """The requests that may land late: deletes, whose lateness the protocol bounds (`window`). A late
    read or write is otherwise a slow caller, which `stops` covers, and the swaps are conditional."""
    max_steps: int = 400
    visited: set[Any] = attrs.field(factory=set)
    runs: int = 0
    cut: int = 0
    _budget: list[int] = attrs.field(factory=list)

    def explore(self, check: Callable[[Run], None]) -> None:
        """Run every schedule; `check` each complete one (it raises to report a violation)."""
        todo: list[tuple[int, ...]] = [()]
        while todo:
            prefix = todo.pop()
            self.runs += 1
            try:
                run = self._run(prefix, todo)
            except Cut:
                self.cut += 1
                continue
            check(run)

    def sample(self, runs: int, seed: int, check: Callable[[Run], None]) -> None:
        """`runs` schedules picked at random (reproducible by `seed`), for spaces too large to exhaust."""
        import random

        pick = random.Random(seed)
        for _ in range(runs):
            self.runs += 1
            check(self._run((), None, pick))

    def _run(self, prefix: tuple[int, ...], todo: list[tuple[int, ...]] | None,
             pick: Any = None) -> Run:
        loop = VirtualLoop()
        loop.set_default_executor(SyncExecutor())
        try:
            return loop.run_until_complete(self._drive(prefix, todo, pick))
        finally:
            loop.close()

    async def _drive(self, prefix: tuple[int, ...], todo: list[tuple[int, ...]] | None, chance: Any) -> Run:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualLoop)
        bucket = Bucket(self.objects)
        IDS.counts.clear()
        tasks: dict[str, asyncio.Task[Any]] = {}
        for name, process in self.processes.items():
            ctx = contextvars.copy_context()
            ctx.run(PROCESS.set, name)
            tasks[name] = loop.create_task(process(SteppedBackend(bucket)), context=ctx)
        choices: list[int] = []
        steps: list[str] = []
        self._budget = [self.stops, self.delays]
        while True:
            await _settle(loop)
            if all(t.done() for t in tasks.values()):
                break
            options = self._options(loop, bucket)
            if not options:
                raise AssertionError(f"deadlock after {steps}")
            if len(choices) >= self.max_steps:
                raise AssertionError(f"no end after {self.max_steps} steps: {steps[-30:]}")
            if len(choices) < len(prefix):
                pick = prefix[len(choices)]
            elif todo is None:
                pick = chance.randrange(len(options))
            else:
                state = self._state(loop, bucket)
                if state in self.visited:
                    await _drain(loop, bucket, tasks.values())
                    raise Cut
                self.visited.add(state)
                todo.extend((*choices, i) for i in range(len(options) - 1, 0, -1))
                pick = 0
            choices.append(pick)
            steps.append(options[pick][0])
            options[pick][1]()
        outcomes = {name: (t.exception() if t.exception() is not None else t.result()) for name, t in tasks.items()}
        return Run(choices=tuple(choices), outcomes=outcomes, objects=dict(bucket.objects), steps=tuple(steps))

    def _state(self, loop: VirtualLoop, bucket: Bucket) -> bytes:
        """A digest of everything the future depends on."""
        timers = sorted(h.when() for h in loop._scheduled if not h.cancelled())  # type: ignore[attr-defined]
        text = repr((loop.now, sorted(bucket.objects.items()), sorted(bucket.seen.items()),
                     sorted((g.process, g.op, g.key, g.since) for g in bucket.gates), timers, self._budget))
        return hashlib.blake2b(text.encode(), digest_size=16).digest()

    def _options(self, loop: VirtualLoop, bucket: Bucket) -> list[tuple[str, Callable[[], None]]]:
        """What can happen next: a waiting request lands (its caller hearing of it at once, or after
        being stopped for `stop`), or the clock moves to the next timer (while requests are in flight,
        only as far as the earliest may be late)."""
        options: list[tuple[str, Callable[[], None]]] = []
        budget = self._budget
        for gate in list(bucket.gates):
            def land(gate: Gate = gate) -> None:
                bucket.land(gate)
            options.append((f"{loop.now:.3f} {gate.process} {gate.op} {gate.key}", land))
            if budget[0] > 0:
                def land_then_stop(gate: Gate = gate) -> None:
                    budget[0] -= 1
                    bucket.land(gate, resume_at=loop.now + self.stop)
                options.append((f"{loop.now:.3f} {gate.process} {gate.op} {gate.key}, then stopped", land_then_stop))
        timers = [h.when() for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
        due = min(itertools.chain((g.since + self.max_delay for g in bucket.gates), timers), default=None)
        may_be_late = [g for g in bucket.gates if g.op in self.late]
        if due is not None and due > loop.now and (not bucket.gates or (budget[1] > 0 and may_be_late)):
            def advance(to: float = due, late: bool = bool(bucket.gates)) -> None:
                budget[1] -= late
                loop.now = to
            options.append((f"{loop.now:.3f} clock -> {due:.3f}", advance))
        return options


async def _drain(loop: VirtualLoop, bucket: Bucket, tasks: Iterable[asyncio.Task[Any]]) -> None:
    """End a schedule cut short: cancel its tasks and fail every request they make while cleaning up."""
    bucket.draining = True
    for gate in bucket.gates:
        gate.future.cancel()
    for _ in range(1000):
        for task in tasks:
            task.cancel()
        await _settle(loop)
        if all(t.done() for t in tasks):
            return
        loop.now = min((h.when() for h in loop._scheduled if not h.cancelled()),  # type: ignore[attr-defined]
                       default=loop.now)
    raise AssertionError("the tasks of a schedule cut short never end")


async def _settle(loop: VirtualLoop) -> None:
    """Let every task run until each waits for a request's turn or a timer."""
    for _ in range(100_000):
        await asyncio.sleep(0)
        due = any(not h.cancelled() and h.when() <= loop.now for h in loop._scheduled)  # type: ignore[attr-defined]
        if not loop._ready and not due:  # type: ignore[attr-defined]
            return
    raise AssertionError("the tasks never settle")
