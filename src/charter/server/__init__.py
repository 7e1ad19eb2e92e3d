"""``charter serve``: the HTTP API (FastAPI on uvicorn) over one :class:`~charter.Runtime`.

::

    app = create_app("sqlite:///charter.db", agents=[load_agent("agent.yaml")])
    uvicorn.run(app, host="127.0.0.1", port=8000)

Every endpoint but ``GET /v1/health`` needs ``Authorization: Bearer TOKEN`` with an API token
(``charter tokens create``). The token gives the principal, its tenant and roles: a run is
started for them, and a run of another tenant is 404, as an unknown one. Runs started here
are worked by ordinary ``charter worker`` processes on the same database. The schema is
served at ``/v1/openapi.json``. Needs the ``server`` extra (``pip install 'charter[server]'``).
"""

from __future__ import annotations

from charter.server._app import create_app
from charter.server._config import ServerConfig, load_config

__all__ = ["ServerConfig", "create_app", "load_config"]
