"""The task endpoints, derived from the task table (:data:`ofa.tasks.TASKS`): each task's
request and result models, its image requirement, and how an API result becomes its
response body. Everything else (parsing, queueing, errors) is shared, so a task added to the
table gets its route with no edit here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ..tasks import TASKS, Task
from .schemas import request_model, result_model, task_info


def finite(x: Any) -> float | None:
    """JSON has no inf or NaN: a score of -inf (an impossible answer) becomes null."""
    x = float(x)
    return x if math.isfinite(x) else None


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float, however deeply nested, turned into None."""
    if isinstance(value, float):
        return finite(value)
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def with_defaults(options: dict, defaults: Mapping[str, Any] | None) -> dict:
    """``options`` with the server's default for each option the request left unset."""
    if not defaults:
        return options
    return {**options, **{k: v for k, v in defaults.items() if options.get(k) is None}}


@dataclass(frozen=True)
class Endpoint:
    task: Task

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def path(self) -> str:
        return f"/v1/{self.task.name}"

    @property
    def summary(self) -> str:
        return self.task.summary

    @property
    def image(self) -> str:  # "required", "optional" or "none"
        return self.task.image

    @property
    def request(self) -> type[BaseModel]:
        return request_model(self.task)

    @property
    def result(self) -> type[BaseModel]:
        return result_model(self.task)

    def body(self, result: dict) -> dict:
        """The task's answer fields of an API result, ready for JSON."""
        data = self.task.to_json(result)
        return {name: json_safe(data.get(name)) for name in self.task.outputs}

    def info(self):
        return task_info(self.task, self.path)


class _Endpoints(Mapping[str, Endpoint]):
    """One endpoint per task of the table, as the table is at each read (an app copies it
    when it is built, so tasks added at runtime are served by the apps built after)."""

    def __getitem__(self, name: str) -> Endpoint:
        return Endpoint(TASKS[name])

    def __iter__(self):
        return iter(TASKS)

    def __len__(self) -> int:
        return len(TASKS)


SPECS: Mapping[str, Endpoint] = _Endpoints()
