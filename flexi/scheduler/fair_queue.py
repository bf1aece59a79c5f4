"""Admission to a model's slots: bounded, priority classes, round-robin across users.

One script firing 30 parallel requests must not starve a student's single chat:
waiting requests are granted by priority class first (interactive before batch),
then one user at a time in turn. Round-robin alone does not stop one person from
filling the bounded queue (everyone else then gets 503), so each identity may also
hold at most `limit` tickets (running + waiting) per model: beyond that it gets
429 (`TooManyRequests`), and only it. Pure asyncio, no model: unit-tested on its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from flexi.engine.types import ServerBusy, TooManyRequests


def holder_of(user: str) -> str:
    """Whose tickets count against the per-identity cap: the identity up to its first "/".

    An end-user suffix (OpenAI's `user`, see flexi.access.caller) splits a service's turn in the
    round-robin, but it is chosen by the client: it must not multiply the client's cap."""
    return user.split("/", 1)[0]


@dataclass(eq=False)
class Ticket:
    user: str
    priority: int
    holder: str = ""
    capped: bool = False  # the holder has a per-person cap: it may not take the model's last free slot
    enqueued: float = field(default_factory=time.monotonic)
    granted: bool = False
    left: bool = False
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait(self, timeout: float | None) -> bool:
        """Wait until granted; False if the timeout passed first."""
        if self.granted:
            return True
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except asyncio.TimeoutError:
            return self.granted
        return True


class FairQueue:
    def __init__(self, capacity: int, max_waiting: int, retry_after: int = 2) -> None:
        self.capacity = capacity
        self.max_waiting = max_waiting
        self.retry_after = retry_after
        self.in_use = 0
        self._classes: dict[int, OrderedDict[str, deque[Ticket]]] = {}
        self._held: dict[str, int] = {}  # holder -> tickets granted or waiting
        self._running: dict[str, int] = {}  # holder -> tickets granted

    @property
    def waiting(self) -> int:
        return sum(len(q) for users in self._classes.values() for q in users.values())

    def held(self, user: str) -> int:
        """Tickets (running + waiting) the holder of `user` has now."""
        return self._held.get(holder_of(user), 0)

    def enter(self, user: str, priority: int = 0, limit: int | None = None) -> Ticket:
        """Take a slot at once if one is free and nobody waits; else queue (or 503 when full).

        `limit`: most tickets the identity may hold at once (429 beyond it; None = no cap)."""
        holder = holder_of(user)
        held = self._held.get(holder, 0)
        if limit is not None and held >= limit:
            raise TooManyRequests(limit, self.retry_after)
        ticket = Ticket(user=user, priority=priority, holder=holder, capped=limit is not None)
        if self.in_use < self.capacity and self.waiting == 0 and self._may_run(ticket):
            self._grant(ticket)
        elif self.waiting >= self.max_waiting:
            raise ServerBusy(self.retry_after)
        else:
            self._classes.setdefault(priority, OrderedDict()).setdefault(user, deque()).append(ticket)
        self._held[holder] = held + 1
        if not ticket.granted:
            self._dispatch()  # a free slot that the people waiting may not take (at their share) goes to this one
        return ticket

    def leave(self, ticket: Ticket) -> None:
        """Release the slot (if granted) or give up the place in the queue. Idempotent."""
        if ticket.left:
            return
        ticket.left = True
        left = self._held.get(ticket.holder, 0) - 1
        if left > 0:
            self._held[ticket.holder] = left
        else:
            self._held.pop(ticket.holder, None)
        if ticket.granted:
            self.in_use -= 1
            running = self._running.get(ticket.holder, 0) - 1
            if running > 0:
                self._running[ticket.holder] = running
            else:
                self._running.pop(ticket.holder, None)
            self._dispatch()
            return
        users = self._classes.get(ticket.priority)
        if users and ticket.user in users:
            users[ticket.user].remove(ticket)
            if not users[ticket.user]:
                del users[ticket.user]

    def set_capacity(self, capacity: int) -> None:
        self.capacity = capacity
        self._dispatch()

    def position(self, ticket: Ticket) -> int:
        """1-based place in the order tickets would be granted (0 once granted)."""
        if ticket.granted:
            return 0
        n = 0
        for prio in sorted(self._classes):
            users = self._classes[prio]
            queues = [list(q) for q in users.values()]
            depth = max((len(q) for q in queues), default=0)
            for r in range(depth):
                for q in queues:
                    if r < len(q):
                        n += 1
                        if q[r] is ticket:
                            return n
        return n

    def share(self) -> int:
        """Most slots one capped person may run at once: all but one, so that somebody else can always start
        at once (a student's 4 long streams on a 4-slot model would otherwise make everyone wait minutes)."""
        return max(1, self.capacity - 1)

    def _may_run(self, ticket: Ticket) -> bool:
        return not ticket.capped or self._running.get(ticket.holder, 0) < self.share()

    def _grant(self, ticket: Ticket) -> None:
        ticket.granted = True
        self.in_use += 1
        self._running[ticket.holder] = self._running.get(ticket.holder, 0) + 1
        ticket._event.set()

    def _dispatch(self) -> None:
        while self.in_use < self.capacity:
            nxt = self._next()
            if nxt is None:
                return
            self._grant(nxt)

    def _next(self) -> Ticket | None:
        for prio in sorted(self._classes):
            users = self._classes[prio]
            for user, queue in users.items():
                if not self._may_run(queue[0]):
                    continue  # at their share: the slot goes to the next person in line
                ticket = queue.popleft()
                del users[user]
                if queue:
                    users[user] = queue  # back of the line: the next user gets the next slot
                return ticket
        return None
