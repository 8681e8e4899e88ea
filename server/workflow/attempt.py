"""One attempt of one step: the tool's context, its arguments, the call under its timeout.

``run_attempt`` builds the ``ToolContext`` (the files it sees are wrapped in a
``RecordingFiles`` noting into the step's ``FileLog``, over the run's changeset when the run's
changes wait for review), renders the step's arguments against the outputs so far, checks
them against the tool's schema, and calls the tool under ``trio.fail_after``. Every failure
becomes a ``ToolError`` value (never raised): ``timeout`` (retryable), the tool's own, an
``AppError`` translated (a retryable ``StoreUnavailable`` stays retryable), ``tool_crashed``
for anything else, ``invalid_output`` for a non-object. Cancellation passes through.

``attempt_until_done`` repeats attempts until success, a permanent error or the step's retries
are spent (``step.retrying`` between them, backoff from ``server.backoff``). A tool failing
because the database could not answer (``is_store_outage``) is retried within the run
writer's window whatever the step's retries, so an outage does not decide the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from server.errors import AppError, StoreUnavailable, ToolError
from server.workflow.accounting import calls_model
from server.workflow.file_log import FileLog, RecordingFiles
from server.workflow.templates import NO_ITEM, TemplateError, render_args
from server.workflow.tools.changeset import ChangesetFiles
from server.workflow.tools.registry import ToolContext, args_validator

if TYPE_CHECKING:
    from collections.abc import Mapping

    from server.workflow.accounting import RunAccounting
    from server.workflow.deps import ExecutorDeps
    from server.workflow.executor import RunExecutor
    from server.workflow.plan import PlanStep
    from server.workflow.tools.registry import Tool

log = logging.getLogger("stretto.workflow")


def is_store_outage(error: ToolError) -> bool:
    """A tool's call failed because the database could not answer (a retryable
    ``StoreUnavailable``): not the tool's fault, and not the step's."""
    return error.retryable and error.code == StoreUnavailable.code


@dataclass
class RunFiles:
    """The file logs of one run's steps, and how its tools see the files."""

    deps: ExecutorDeps
    run_id: str
    review: bool = False

    def __post_init__(self) -> None:
        self.logs: dict[str, FileLog] = {}  # step id -> the files its attempts used

    def for_step(self, step_id: str) -> RecordingFiles:
        deps = self.deps
        files = ChangesetFiles(deps.store, deps.files.limits, self.run_id) if self.review else None
        return RecordingFiles(files or deps.files, self.logs.setdefault(step_id, FileLog()))

    def reads(self, step_id: str) -> dict[str, Any] | None:
        """The step's file log as stored with its outcome (None: it used no files)."""
        log_ = self.logs.get(step_id)
        return None if log_ is None else log_.to_json()


async def run_attempt(
    deps: ExecutorDeps,
    project_id: str,
    run_id: str,
    step: PlanStep,
    tool: Tool,
    attempt: int,
    limit_s: float,
    *,
    files: RunFiles,
    outputs: Mapping[str, Any],
    item: Any = NO_ITEM,
    accounting: RunAccounting,
) -> dict[str, Any] | ToolError:
    """One call of the tool under ``fail_after``; errors become a ``ToolError`` value."""
    ctx = ToolContext(
        project_id=project_id,
        run_id=run_id,
        step_id=step.id,
        attempt=attempt,
        files=files.for_step(step.id),
        publisher=deps.publisher,
        provider=deps.provider,
        settings=deps.settings,
    )
    try:
        args = render_args(step.args, outputs, deps.settings.max_template_arg_bytes, item=item)
    except TemplateError as exc:
        return ToolError(exc.code, str(exc))
    problems = sorted(args_validator(tool).iter_errors(args), key=str)
    if problems:
        return ToolError("invalid_args", f"arguments after substitution: {problems[0].message}")
    try:
        if calls_model(tool.name):
            accounting.check()
        with trio.fail_after(limit_s), accounting.metered(step.id):
            output: object = await tool.run(ctx, args)
    except trio.TooSlowError:
        return ToolError("timeout", f"The step timed out after {limit_s:g}s.", retryable=True)
    except ToolError as exc:
        return exc
    except AppError as exc:
        return ToolError(
            exc.code, exc.message, retryable=isinstance(exc, StoreUnavailable) and exc.retryable
        )
    except Exception as exc:
        log.exception("tool %s crashed in run %s step %s", tool.name, run_id, step.id)
        return ToolError("tool_crashed", f"{type(exc).__name__}: {exc}")
    if not isinstance(output, dict):
        return ToolError("invalid_output", "The tool returned something other than an object.")
    return output


async def attempt_until_done(
    ex: RunExecutor, step: PlanStep, tool: Tool
) -> dict[str, Any] | ToolError:
    """Attempts until success, a permanent error or the retries are spent."""
    timeout = step.timeout_s if step.timeout_s is not None else tool.timeout_s
    retries = step.retries if step.retries is not None else tool.retries
    retried = 0
    outage_began: float | None = None
    outage_failures = 0
    while True:
        outcome = await run_attempt(
            ex.deps,
            ex.project_id,
            ex.run_id,
            step,
            tool,
            ex.state.started[step.id],
            timeout,
            files=ex.files,
            outputs=ex.outputs,
            item=ex.items.get(step.id, NO_ITEM),
            accounting=ex.accounting,
        )
        if not isinstance(outcome, ToolError):
            return outcome
        if is_store_outage(outcome):
            # The database failed, not the tool: retried within the run writer's window
            # whatever the step's retries, so an outage does not decide the run.
            now = trio.current_time()
            outage_began = now if outage_began is None else outage_began
            if now - outage_began >= ex.deps.write_policy.window_s:
                return outcome
            outage_failures += 1
            policy = ex.deps.write_policy
            delay = policy.backoff.delay(outage_failures, None, ex.deps.rng)
        elif not outcome.retryable or retried >= retries:
            return outcome
        else:
            retried += 1
            delay = ex.deps.step_backoff.delay(retried, outcome.retry_after, ex.deps.rng)
        await ex.commit(ex.state.step_retrying(step.id, outcome.to_json(), delay, ex.clock.now()))
        await trio.sleep(delay)
        ex.monitor.attempt(step.id)
