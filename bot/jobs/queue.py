"""The fair per-guild queue: round-robin between users, FIFO within a user."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable

from bot.store import Task


class GuildQueue:
    """Queued tasks of one guild; users take turns, each user's tasks stay in order."""

    def __init__(self) -> None:
        # Users in turn order; the first one is served next.
        self._users: OrderedDict[int, deque[Task]] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(tasks) for tasks in self._users.values())

    def __bool__(self) -> bool:
        return bool(self._users)

    def push(self, task: Task) -> None:
        """Add a task at the end of its user's line (a new user joins the end of the turn)."""
        self._users.setdefault(task.user_id, deque()).append(task)

    def push_front(self, task: Task) -> None:
        """Put a task back where it was taken from: head of its user's line, user's turn next."""
        self._users.setdefault(task.user_id, deque()).appendleft(task)
        self._users.move_to_end(task.user_id, last=False)

    def pop(self, ready: Callable[[int], bool] = lambda user_id: True) -> Task | None:
        """Take the next task in turn of a user `ready` accepts, or None when there is none.

        A user passed over (say, at their running limit) keeps their place in the turn, so
        they are served first once ready again; the others are not held up meanwhile.
        """
        user_id = next((user for user in self._users if ready(user)), None)
        if user_id is None:
            return None
        tasks = self._users[user_id]
        task = tasks.popleft()
        if tasks:
            self._users.move_to_end(user_id)
        else:
            del self._users[user_id]
        return task

    def remove(self, task_id: int) -> Task | None:
        """Remove a task wherever it is; return it, or None when it is not queued here."""
        for user_id, tasks in self._users.items():
            for task in tasks:
                if task.id == task_id:
                    tasks.remove(task)
                    if not tasks:
                        del self._users[user_id]
                    return task
        return None

    def order(self) -> list[Task]:
        """Return the queued tasks in the order they will be taken."""
        lines = [list(tasks) for tasks in self._users.values()]
        result: list[Task] = []
        depth = max((len(line) for line in lines), default=0)
        for turn in range(depth):
            result.extend(line[turn] for line in lines if turn < len(line))
        return result

    def positions(self) -> dict[int, int]:
        """Return task id -> 1-based position in the order they will be taken."""
        return {task.id: index for index, task in enumerate(self.order(), start=1)}
