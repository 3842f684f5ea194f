"""Built-in tasks; importing this package registers them (see `sodakit.eval.tasks.base.TASKS`)."""

from sodakit.eval.tasks import generation, hellaswag, likelihood, matching, nll, s2st  # noqa: F401  (registration side effects)
from sodakit.eval.tasks.base import TASKS, EvalContext, TaskError, TaskResult, TaskSpec, get_task

__all__ = ["TASKS", "EvalContext", "TaskError", "TaskResult", "TaskSpec", "get_task"]
