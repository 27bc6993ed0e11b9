"""Group commit for the webhook routes: the requests of an event loop, stored together.

A commit on PostgreSQL waits for an fsync (about 7 ms on the disks measured), and a commit per
webhook would cap a process at the disk's commit rate. Requests hand their delivery to the
intake and wait, holding no thread; the intake gives whatever is waiting to one of `depth`
store threads as one group, so one transaction and one fsync serve every request that arrived
while the previous groups were being stored. Idle, a group is a single request and adds no
wait; under load, groups grow by themselves.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from gateway.ingest import Item, Outcome, Receipt
from odr_shared.problems import Problem

log = logging.getLogger(__name__)

Store = Callable[[Sequence[Item]], list[Outcome]]


@dataclass
class _LoopState:
    waiting: deque[tuple[Item, asyncio.Future[Receipt]]] = field(default_factory=deque)
    in_flight: int = 0
    scheduled: bool = False


class Intake:
    """Groups deliveries per event loop; at most `depth` groups are stored at once."""

    def __init__(
        self, store: Store, depth: int, *, max_updates: int = 1000, max_waiting: int = 10_000
    ) -> None:
        self.store = store
        self.depth = max(1, depth)
        self.max_updates = max_updates
        self.max_waiting = max_waiting
        self._executor = ThreadPoolExecutor(self.depth, thread_name_prefix="gateway-store")
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )

    async def submit(self, item: Item) -> Receipt:
        """Store `item` with whatever else is waiting; its receipt once the group committed."""
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = self._loops[loop] = _LoopState()
        if len(state.waiting) >= self.max_waiting:
            # The database is not keeping up: say so at once rather than queue without bound.
            raise Problem(
                503,
                "Service Unavailable",
                "the gateway is storing deliveries as fast as it can; send this one again",
                headers={"Retry-After": "1"},
                retry_after=1,
            )
        answer: asyncio.Future[Receipt] = loop.create_future()
        state.waiting.append((item, answer))
        if not state.scheduled:
            # At the end of this turn of the loop, so requests read in one turn go together.
            state.scheduled = True
            loop.call_soon(self._pump, loop, state)
        return await answer

    def _pump(self, loop: asyncio.AbstractEventLoop, state: _LoopState) -> None:
        state.scheduled = False
        while state.waiting and state.in_flight < self.depth:
            group: list[tuple[Item, asyncio.Future[Receipt]]] = []
            size = 0
            while state.waiting and (
                not group or size + state.waiting[0][0].size <= self.max_updates
            ):
                item, answer = state.waiting.popleft()
                if answer.done():  # the client went away before its turn
                    continue
                group.append((item, answer))
                size += item.size
            if not group:
                return
            state.in_flight += 1
            stored = loop.run_in_executor(self._executor, self.store, [i for i, _a in group])
            stored.add_done_callback(
                lambda done, g=group: self._settle(loop, state, g, done)  # type: ignore[misc]
            )

    def _settle(
        self,
        loop: asyncio.AbstractEventLoop,
        state: _LoopState,
        group: list[tuple[Item, asyncio.Future[Receipt]]],
        done: asyncio.Future[list[Outcome]],
    ) -> None:
        state.in_flight -= 1
        error = done.exception()
        if error is not None:
            log.error("storing a group failed", exc_info=error, extra={"size": len(group)})
        for n, (_item, answer) in enumerate(group):
            if answer.done():  # the client went away; its delivery is stored all the same
                continue
            if error is not None:
                answer.set_exception(error)
                continue
            outcome = done.result()[n]
            if isinstance(outcome, Problem):
                answer.set_exception(outcome)
            else:
                answer.set_result(outcome)
        self._pump(loop, state)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)
