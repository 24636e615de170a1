"""Run one workflow request: every stage a tagged call through the gateway, parallel stages
concurrently, and a trace of where and how each ran.

The executor is an agent app like any other: it speaks HTTP to a gateway (in the gateway,
an in-process ASGI transport to the gateway's own app), so each stage goes through the same
tagging, router, scheduler and accounting as a user's tagged call, with no side path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from aragog.client import WorkflowRequest
from aragog.workflow.combine import agreed, plurality
from aragog.workflow.parsing import Answer, parse_output
from aragog.workflow.spec import StageSpec, WorkflowSpec
from aragog.workflow.template import INPUT, TemplateError, references, render

CHAT_PATH = "/v1/chat/completions"
QUEUE_WAIT_HEADER = "x-aragog-queue-wait"
_RETRYABLE = {429, 503, 504}


class RunError(Exception):
    """Base of the executor's errors; ``status`` and ``code`` are the HTTP answer."""

    status = 400
    code = "invalid_request"


class BadInput(RunError):
    code = "invalid_input"


class NotRunnable(RunError):
    code = "workflow_not_runnable"


class StageFailed(RunError):
    def __init__(
        self, stage: str, status: int, message: str, retry_after: str | None = None
    ) -> None:
        super().__init__(f"stage {stage!r}: {message}")
        self.stage = stage
        # Load shedding keeps its status so clients back off; anything else is the fleet's.
        self.status = status if status in _RETRYABLE else 502
        self.code = "stage_failed"
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class StageTrace:
    stage: str
    model: str | None  # None when the stage was skipped (its answer came from upstream)
    engine: str | None
    started_s: float  # since the run began
    queue_wait_s: float  # held by the gateway's policy before dispatch
    latency_s: float  # the whole call, queue wait included
    prompt_tokens: int
    completion_tokens: int
    text: str
    answer: Answer
    skipped: bool = False


@dataclass(frozen=True, slots=True)
class RunResult:
    id: str
    workflow: str
    answer: Answer
    text: str
    latency_s: float
    stages: tuple[StageTrace, ...]  # spec stage order

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "workflow.run",
            "workflow": self.workflow,
            "answer": self.answer,
            "text": self.text,
            "latency_s": self.latency_s,
            "configuration": {t.stage: t.model for t in self.stages},
            "usage": {
                "prompt_tokens": sum(t.prompt_tokens for t in self.stages),
                "completion_tokens": sum(t.completion_tokens for t in self.stages),
            },
            "stages": [asdict(t) for t in self.stages],
        }


def check_input(spec: WorkflowSpec, value: object) -> list[str]:
    """Problems with a run's input against what the spec's templates read."""
    if not isinstance(value, str | dict) or not value:
        return ["input: must be a non-empty string or object"]
    problems = []
    for s in spec.stages:
        for template in (s.system, prompt_of(spec, s)):
            for path in references(template or ""):
                if path[0] != INPUT or len(path) == 1:
                    continue
                field = ".".join(path)
                if isinstance(value, str):
                    problems.append(f"input: stage {s.name!r} reads {field}; give an object")
                elif path[1] not in value:
                    problems.append(f"{field}: missing (read by stage {s.name!r})")
    return sorted(set(problems))


def prompt_of(spec: WorkflowSpec, stage: StageSpec) -> str:
    """The stage's template, or the input followed by its parents' answers."""
    if stage.prompt is not None:
        return stage.prompt
    return "{{input}}" + "".join(f"\n\n{p}:\n{{{{{p}}}}}" for p in spec.parents(stage.name))


class Executor:
    def __init__(
        self,
        client: httpx.AsyncClient,
        default_max_tokens: int = 256,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._client = client
        self._max_tokens = default_max_tokens
        self._clock = clock

    async def run(
        self,
        spec: WorkflowSpec,
        value: object,
        *,
        request_id: str | None = None,
        configuration: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> RunResult:
        """``headers`` go on every stage call (the caller's credentials, say)."""
        final = spec.final_stage()
        if final is None:
            raise NotRunnable(f"workflow {spec.name!r}: several stages end the DAG; set output")
        if problems := check_input(spec, value):
            raise BadInput("; ".join(problems))
        req = WorkflowRequest(spec.name, request_id, configuration)
        run = _Run(self, spec, value, req, headers or {})
        traces = await run.all()
        last = traces[final]
        return RunResult(
            run.req.request_id,
            spec.name,
            last.answer,
            last.text,
            self._clock() - run.t0,
            tuple(traces[s] for s in spec.stage_names),
        )


class _Run:
    """One request's state while it runs: answers so far and the stage tasks."""

    def __init__(
        self,
        ex: Executor,
        spec: WorkflowSpec,
        value: object,
        req: WorkflowRequest,
        headers: Mapping[str, str],
    ) -> None:
        self.ex, self.spec, self.req, self.headers = ex, spec, req, headers
        self.scope: dict[str, object] = {INPUT: value}
        self.tasks: dict[str, asyncio.Task[StageTrace]] = {}
        self.t0 = ex._clock()

    async def all(self) -> dict[str, StageTrace]:
        try:
            async with asyncio.TaskGroup() as tg:
                for s in _topological(self.spec):  # a stage awaits its parents' tasks
                    self.tasks[s.name] = tg.create_task(self.stage(s))
        except ExceptionGroup as eg:
            raise _first(eg) from None
        return {name: t.result() for name, t in self.tasks.items()}

    async def stage(self, s: StageSpec) -> StageTrace:
        for p in self.spec.parents(s.name):
            await self.tasks[p]
        if s.unless_agree:
            common = agreed([self._answer(u) for u in s.unless_agree])
            if common is not None:
                return self._done(self._skipped(s, common))
        trace = await self.call(s)
        if s.vote:
            votes = [self._answer(v) for v in s.vote]
            return self._done(_with_answer(trace, plurality(votes, trace.answer)))
        return self._done(trace)

    def _answer(self, stage: str) -> Answer:
        value = self.scope.get(stage, "")
        return value if isinstance(value, str | list) else ""

    def _done(self, trace: StageTrace) -> StageTrace:
        self.scope[trace.stage] = trace.answer
        return trace

    def _skipped(self, s: StageSpec, answer: Answer) -> StageTrace:
        text = answer if isinstance(answer, str) else "\n".join(answer)
        return StageTrace(
            s.name,
            None,
            None,
            self.ex._clock() - self.t0,
            0.0,
            0.0,
            0,
            0,
            text,
            answer,
            skipped=True,
        )

    def messages(self, s: StageSpec) -> list[dict[str, str]]:
        strict = frozenset({INPUT})
        try:
            msgs = (
                [{"role": "system", "content": render(s.system, self.scope, strict)}]
                if s.system
                else []
            )
            msgs.append(
                {"role": "user", "content": render(prompt_of(self.spec, s), self.scope, strict)}
            )
        except TemplateError as err:
            raise BadInput(f"stage {s.name!r}: {err}") from None
        return msgs

    async def call(self, s: StageSpec) -> StageTrace:
        body: dict[str, Any] = {
            "messages": self.messages(s),
            "max_tokens": s.max_tokens or self.ex._max_tokens,
        }
        if s.temperature is not None:
            body["temperature"] = s.temperature
        started = self.ex._clock()
        try:
            resp = await self.ex._client.post(
                CHAT_PATH, json=body, headers={**self.headers, **self.req.headers(s.name)}
            )
        except httpx.HTTPError as err:
            raise StageFailed(s.name, 502, f"gateway unreachable ({type(err).__name__})") from None
        latency = self.ex._clock() - started
        if resp.status_code != 200:
            raise StageFailed(
                s.name, resp.status_code, _error_message(resp), resp.headers.get("retry-after")
            )
        data = resp.json()
        text = _content(data)
        usage = data.get("usage") or {}
        return StageTrace(
            s.name,
            resp.headers.get("x-aragog-model"),
            resp.headers.get("x-aragog-engine"),
            started - self.t0,
            float(resp.headers.get(QUEUE_WAIT_HEADER, "0") or 0),
            latency,
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
            text,
            parse_output(s.parse, text, s.pattern),
        )


def _with_answer(t: StageTrace, answer: Answer) -> StageTrace:
    return StageTrace(
        t.stage,
        t.model,
        t.engine,
        t.started_s,
        t.queue_wait_s,
        t.latency_s,
        t.prompt_tokens,
        t.completion_tokens,
        t.text,
        answer,
        t.skipped,
    )


def _content(data: Any) -> str:
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else ""


def _error_message(resp: httpx.Response) -> str:
    try:
        err = resp.json()["error"]
        return f"{resp.status_code} {err.get('code')}: {err.get('message')}"
    except Exception:  # not our error shape (a proxy in between); keep it short
        return f"{resp.status_code}: {resp.text[:200]}"


def _first(eg: BaseExceptionGroup[Exception]) -> Exception:
    """The error to report: the first RunError (a child that only saw its parent fail
    repeats the parent's), else the first error."""
    flat: list[Exception] = []

    def walk(g: BaseExceptionGroup[Exception]) -> None:
        for e in g.exceptions:
            if isinstance(e, BaseExceptionGroup):
                walk(e)
            else:
                flat.append(e)

    walk(eg)
    return next((e for e in flat if isinstance(e, RunError)), flat[0])


def _topological(spec: WorkflowSpec) -> list[StageSpec]:
    """Stages with every parent before its children (specs may list them in any order)."""
    order: list[StageSpec] = []
    placed: set[str] = set()
    while len(order) < len(spec.stages):
        for s in spec.stages:
            if s.name not in placed and all(p in placed for p in spec.parents(s.name)):
                order.append(s)
                placed.add(s.name)
    return order
