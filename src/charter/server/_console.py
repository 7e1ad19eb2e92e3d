"""The web console: static HTML, CSS and JavaScript in the package (no build step, nothing
fetched from elsewhere), served at ``/`` and ``/console/``; it calls the same /v1 API with
the token the user logs in with (kept in the browser tab's sessionStorage)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

FILES = Path(__file__).parent / "console"


def mount_console(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(FILES / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/console", StaticFiles(directory=FILES), name="console")
