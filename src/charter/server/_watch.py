"""Watching runs: a run's timeline (what ``charter runs show`` prints, as JSON) and its events
live over Server-Sent Events, one run's or a whole tenant's (:mod:`charter.server._live`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from charter.errors import InputError
from charter.server._auth import Caller, RuntimeDep
from charter.server._live import LiveEvents
from charter.timeline import build

router = APIRouter()

KEEPALIVE_S = 15.0
"""A comment line this often on a quiet stream, so that proxies keep it open."""
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class TimelineLine(BaseModel):
    depth: int = Field(description="Indent: 0 run and step lines, 1 calls, 2 what became of them.")
    text: str = Field(description="The line as `charter runs show` prints it.")
    seq: int | None = Field(description="The event's seq; null on a 'continued' header line.")
    type: str | None = Field(description="The event's type; null on a header line.")
    at: float | None
    offset_s: float = Field(description="Seconds since the run's first event.")
    tone: Literal["good", "warn", "bad"] | None = Field(
        description="good: allowed, succeeded; warn: held, waiting; bad: denied, failed."
    )
    bold: bool
    step: int | None = Field(description="The step (model call) the line belongs to.")
    call_id: str | None = Field(description="The tool call the line is about.")


class TimelineTotals(BaseModel):
    steps: int
    tool_calls: int
    failed_calls: int
    retries: int
    tokens: int
    model_usd: float
    tool_usd: float
    cost_usd: float
    wall_s: float
    text: str = Field(description="The totals line as `charter runs show` prints it.")


class RunTimeline(BaseModel):
    run: dict[str, Any] = Field(description="The run's record, as GET /v1/runs/{run_id}.")
    lines: list[TimelineLine]
    totals: TimelineTotals


@router.get("/v1/runs/{run_id}/timeline", response_model=RunTimeline)
async def run_timeline(run_id: str, who: Caller, rt: RuntimeDep) -> Response:
    """The run step by step: each step's model, tokens, cost and latency; under it each tool
    call with its policy decision and rules, approval, kill-switch block and outcome; then
    the run's totals. The same lines as `charter runs show`."""
    record = await rt.get_run(run_id, tenant=who.tenant)
    timeline = build(await rt.events(run_id, tenant=who.tenant))
    body = {  # typed values already: straight to JSON, RunTimeline documents the shape
        "run": record.to_dict(),
        "lines": [line.to_dict() for line in timeline.lines],
        "totals": timeline.totals.to_dict(),
    }
    text = json.dumps(body, default=str, ensure_ascii=False)
    return Response(text, media_type="application/json")


def _position(after: int | None, last_event_id: str | None) -> int:
    if last_event_id is not None and last_event_id.strip():
        try:
            return max(0, int(last_event_id))
        except ValueError:
            raise InputError(
                f"Last-Event-ID {last_event_id!r} is not an event's seq",
                hint="send back the id of the last event received, or ?after=SEQ",
            ) from None
    return after or 0


def _sse(data: Any, *, event: str) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str, ensure_ascii=False)}\n\n"


async def _next(queue: asyncio.Queue[Any]) -> tuple[bool, Any]:
    """``(True, item)``, or ``(False, None)`` after :data:`KEEPALIVE_S` of quiet."""
    try:
        return True, await asyncio.wait_for(queue.get(), KEEPALIVE_S)
    except TimeoutError:
        return False, None


def _live(request: Request) -> LiveEvents:
    live: LiveEvents = request.app.state.live
    return live


@router.get(
    "/v1/runs/{run_id}/events/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_run_events(
    run_id: str,
    request: Request,
    who: Caller,
    rt: RuntimeDep,
    after: Annotated[int | None, Query(ge=0, description="Start after this seq.")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """The run's events as Server-Sent Events, oldest first, from after `Last-Event-ID` (or
    `?after=`, else from the start) and live as they are committed; each is `id: SEQ`, `data:
    EVENT` (as GET /v1/runs/{run_id}/events). When the run has finished and its last event was
    sent, an `event: end` with the run's status closes the stream."""
    await rt.get_run(run_id, tenant=who.tenant)  # 404 for an unknown or another tenant's run
    live = _live(request)
    watch = live.watch_run(run_id, _position(after, last_event_id))

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 1000\n\n"
            while True:
                got, batch = await _next(watch.queue)
                if not got:
                    yield ": keep-alive\n\n"
                elif batch is None:
                    run = await rt.get_run(run_id)
                    yield _sse({"run_id": run_id, "status": run.status}, event="end")
                    return
                else:
                    yield "".join(f"id: {seq}\ndata: {text}\n\n" for seq, text in batch)
        finally:
            live.unwatch(watch)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_SSE_HEADERS)


@router.get(
    "/v1/events/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_tenant_runs(request: Request, who: Caller) -> StreamingResponse:
    """The token's tenant's runs as they move, as Server-Sent Events: `event: run`, `data:`
    the run's head (run_id, agent_name, status, last_seq, created_at, updated_at) when a run
    is created, changes status or commits events. For keeping a runs list current; follow
    one run's events with /v1/runs/{run_id}/events/stream. Does not end by itself."""
    live = _live(request)
    watch = await live.watch_tenant(who.tenant)

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 1000\n\n"
            while True:
                got, head = await _next(watch.queue)
                yield _sse(head.to_dict(), event="run") if got else ": keep-alive\n\n"
        finally:
            live.unwatch(watch)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_SSE_HEADERS)
