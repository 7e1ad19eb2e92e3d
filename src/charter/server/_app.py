"""The FastAPI application: one thin route per call on the runtime or its operations."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from charter.agents import Agent
from charter.errors import CharterError, InputError, NotFoundError, http_status
from charter.events import RunStatus
from charter.runtime import Runtime
from charter.schedules import DEFAULT_TICK_S, tick_forever
from charter.server import _control, _evals, _inbox, _insight, _schemas as s
from charter.server._auth import Caller, RuntimeDep
from charter.server._config import ServerConfig
from charter.server._console import mount_console
from charter.server._hooks import build_hooks, router as hooks_router
from charter.server._live import LiveEvents
from charter.server._notify import notifying
from charter.server._oidc import OidcVerifier
from charter.server._schedules import router as schedules_router
from charter.server._watch import router as watch_router
from charter.stats import parse_since

MAX_PAGE = 500


def create_app(
    db_url: str,
    *,
    agents: Sequence[Agent] = (),
    eval_reports: str | Path | None = None,
    config: ServerConfig | None = None,
    tick_s: float | None = DEFAULT_TICK_S,
    **runtime_options: Any,
) -> FastAPI:
    """The API over a runtime opened on ``db_url`` when the app starts (closed when it
    stops); ``agents`` are the ones ``POST /v1/runs`` may name; ``eval_reports`` a directory
    of eval report files (``GET /v1/evals``). ``config``: ``charter serve --config``
    (server/_config.py). ``tick_s``: how often to start due schedule ticks (None: never)."""
    by_name = {agent.name: agent for agent in agents}
    config = config or ServerConfig()
    hooks = build_hooks(config.hooks, by_name)
    if config.notifications is not None:
        config.notifications.check_secrets()  # a missing secret stops the start, not a POST

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime.open(db_url, **runtime_options) as rt:
            app.state.runtime = rt
            stop = asyncio.Event()
            ticker = None if tick_s is None else asyncio.create_task(tick_forever(rt, tick_s, stop))
            app.state.live = LiveEvents(rt)
            app.state.live.start()
            try:
                async with notifying(rt, config.notifications):
                    yield
            finally:
                await app.state.live.stop()
                stop.set()
                if ticker is not None:
                    await ticker

    app = FastAPI(
        title="Charter",
        version="1",
        lifespan=lifespan,
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
    )
    app.add_exception_handler(CharterError, _charter_error)
    app.add_exception_handler(RequestValidationError, _bad_request)
    app.state.agents, app.state.hooks = by_name, hooks
    app.state.oidc = None if config.oidc is None else OidcVerifier(config.oidc)
    _routes(app, by_name)
    app.state.eval_reports = None if eval_reports is None else Path(eval_reports)
    for router in (_inbox.router, _control.router, _insight.router, _evals.router):
        app.include_router(router)
    app.include_router(hooks_router)
    app.include_router(schedules_router)
    app.include_router(watch_router)
    mount_console(app)
    return app


def _error(status: int, error: CharterError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": error.to_dict()}, status_code=status, headers=headers)


async def _charter_error(request: Request, exc: Exception) -> JSONResponse:
    """The error as the CLI would say it, without where the server's database is: a store's
    messages name its URL, which is none of an API client's business."""
    assert isinstance(exc, CharterError)
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is not None and runtime.url in f"{exc.message} {exc.hint}":
        exc = copy.copy(exc)
        exc.message = exc.message.replace(runtime.url, "the server's database")
        exc.hint = exc.hint and exc.hint.replace(runtime.url, "the server's database")
    return _error(http_status(exc), exc)


async def _bad_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return _error(400, InputError(f"bad request: {problems}", hint="see /v1/openapi.json"))


def _routes(app: FastAPI, agents: dict[str, Agent]) -> None:
    @app.get("/v1/health")
    async def health() -> dict[str, str]:
        """Liveness, without a token."""
        return {"status": "ok"}

    @app.post("/v1/runs", status_code=201)
    async def start_run(
        body: s.StartRun,
        who: Caller,
        rt: RuntimeDep,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> s.RunStarted:
        """Start a run for the token's principal and tenant; a worker works it. A repeated
        request with the same Idempotency-Key returns the run the first one started."""
        agent = agents.get(body.agent)
        if agent is None:
            raise NotFoundError(
                f"no agent {body.agent!r} on this server",
                hint=f"this server runs: {', '.join(sorted(agents)) or 'no agents'}",
            )
        run_id = await rt.start(
            agent,
            body.input,
            tenant=who.tenant,
            principal=who.principal,
            roles=who.roles,
            principal_tenant=who.tenant,
            idempotency_key=idempotency_key,
        )
        return s.RunStarted(run_id=run_id)

    @app.get("/v1/runs")
    async def list_runs(
        who: Caller,
        rt: RuntimeDep,
        status: RunStatus | None = None,
        agent: str | None = None,
        principal: str | None = None,
        model: Annotated[str | None, Query(description="A model's served id or sha256")] = None,
        since: Annotated[str | None, Query(description="30m, 24h, 7d, 2w")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: str | None = None,
    ) -> s.RunList:
        """The tenant's runs, newest first, a page at a time."""
        runs = await rt.list_runs(
            tenant=who.tenant,
            status=status,
            agent=agent,
            principal=principal,
            model=model,
            since=None if since is None else parse_since(since),
            before=None if cursor is None else s.parse_cursor(cursor),
            limit=limit + 1,  # one more than the page: is there a next one?
        )
        page = runs[:limit]
        return s.RunList(
            runs=[s.run_view(r) for r in page],
            next_cursor=s.cursor_of(page[-1]) if len(runs) > limit else None,
        )

    @app.get("/v1/runs/{run_id}")
    async def get_run(run_id: str, who: Caller, rt: RuntimeDep) -> dict[str, Any]:
        """A run's record: status, lease, state."""
        return s.run_view(await rt.get_run(run_id, tenant=who.tenant))

    @app.get("/v1/runs/{run_id}/events")
    async def run_events(run_id: str, who: Caller, rt: RuntimeDep) -> list[dict[str, Any]]:
        """A run's log, oldest first."""
        return [e.to_dict() for e in await rt.events(run_id, tenant=who.tenant)]

    @app.post("/v1/runs/{run_id}/messages", status_code=202)
    async def send_message(
        run_id: str, body: s.NewMessage, who: Caller, rt: RuntimeDep
    ) -> s.MessageSent:
        """Deliver a message to the run's inbox; a run waiting for one becomes runnable."""
        message_id = await rt.send(run_id, body.text, tenant=who.tenant)
        return s.MessageSent(run_id=run_id, message_id=message_id)
