"""The API fuzzed from its own OpenAPI schema (schemathesis), against a real `charter serve`
on SQLite and PostgreSQL, with the tokens of two tenants: no request makes the server fail
(5xx), and no answer to one tenant carries anything of the other's. Every endpoint the
schema lists is walked, so an endpoint added later is fuzzed without a change here."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies as st
from tests.helpers.cli import run_charter
from tests.helpers.refund_agent import write_refund_agent
from tests.helpers.server import serving, write_helper_agent
from tests.integration.test_server_api import token

EXAMPLES = 10
"""Generated requests per operation (with each tenant's token); the suite's time bound."""
SECRET = "globex-secret-order-4471"
"""The input of the other tenant's run: it must never appear in an answer to acme."""
UNSCOPED = {
    "/v1/evals/{name}": "eval reports are files about suites, open to any token",
    "/v1/hooks/{name}": "a hook is authenticated by its signature, not by a tenant's token",
}
"""Paths whose object belongs to no tenant, so there is no globex one to try."""


def _globex_objects(tmp_path: Path, db_url: str) -> dict[str, str]:
    """A held approval (a 120.00 refund waiting for a lead) and a schedule, of globex."""
    where = tmp_path / "globex"
    where.mkdir()
    write_refund_agent(where)
    for args in (
        ("start", "agent.yaml", "--input", SECRET, "--tenant", "globex", "--principal", "gus"),
        ("worker", "--until-idle"),
        ("schedules", "add", "globex-nightly", "--cron", "0 3 * * *", "--agent", "agent.yaml",
         "--input", SECRET, "--tenant", "globex"),
    ):  # fmt: skip
        done = run_charter(where, *args, "--db", db_url)
        assert done.returncode == 0, done.stderr
    listed = run_charter(where, "approvals", "list", "--json", "--db", db_url)
    [approval] = json.loads(listed.stdout)
    return {"approval_id": approval["approval_id"], "name": "globex-nightly"}


def _database(url: str) -> str:
    """How an answer would name the server's database: its file, or its name."""
    return url.removeprefix("sqlite:///") if url.startswith("sqlite") else urlsplit(url).path[1:]


def _leaks(text: str, foreign: dict[str, str]) -> list[str]:
    return [name for name, value in foreign.items() if value in text]


def test_no_request_fails_the_server_or_reaches_another_tenant(
    tmp_path: Path, store_url: str
) -> None:
    write_helper_agent(tmp_path)
    acme = token(
        tmp_path, store_url, "alice@acme.com", "acme", "--role", "support", "--role", "operator"
    )
    globex = token(tmp_path, store_url, "gus@globex.com", "globex", "--role", "support")
    held = _globex_objects(tmp_path, store_url)
    with serving(tmp_path, store_url, "agent.yaml") as base:
        start = {"agent": "helper", "input": SECRET}
        theirs = httpx.post(
            f"{base}/v1/runs", json=start, headers={"Authorization": f"Bearer {globex['token']}"}
        )
        assert theirs.status_code == 201, theirs.text
        mine = httpx.post(
            f"{base}/v1/runs",
            json={"agent": "helper", "input": "my order"},
            headers={"Authorization": f"Bearer {acme['token']}"},
        )
        assert mine.status_code == 201, mine.text
        ids = {"run_id": theirs.json()["run_id"], **held}
        foreign = {
            "run id": ids["run_id"],
            "approval id": ids["approval_id"],
            "schedule": ids["name"],
            "input": SECRET,
            "tenant": "globex",
            "database": _database(store_url),  # the server's, not globex's: nobody's business
        }
        schema = schemathesis.openapi.from_url(f"{base}/v1/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 5, [op.label for op in operations]

        failures: list[str] = []
        for operation in operations:
            params = set(re.findall(r"{(\w+)}", operation.path))
            unknown = params - set(ids)
            assert not unknown, f"{operation.label}: add a foreign value for {unknown}"
            _fuzz(operation, base, acme["token"], foreign, failures)
            if params and operation.path not in UNSCOPED:
                mine_only = {name: ids[name] for name in params}
                _cross_tenant(operation, base, acme["token"], mine_only, foreign, failures)
        assert not failures, "\n".join(failures[:20])


def _fuzz(
    operation: Any, base: str, secret: str, foreign: dict[str, str], failures: list[str]
) -> None:
    @given(case=operation.as_strategy(), auth=st.sampled_from([secret, None, "nonsense"]))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def probe(case: Any, auth: str | None) -> None:
        headers = {"Authorization": f"Bearer {auth}"} if auth else {}
        if case.path.endswith("/stream"):  # an open stream is not read to its end
            url = f"{base}{case.formatted_path}"
            with httpx.stream("GET", url, params=case.query, headers=headers, timeout=30) as r:
                if r.status_code == 200:
                    return
                r.read()
                response: Any = r
        else:
            response = case.call(base_url=base, headers=headers, timeout=30)
        where = f"{case.method} {case.formatted_path} ({'token' if auth else 'no token'})"
        if response.status_code >= 500:
            failures.append(f"{where}: {response.status_code} {response.text[:300]}")
        elif leaked := _leaks(response.text, foreign):
            failures.append(f"{where}: the answer carries {', '.join(leaked)}")
        elif auth != secret and response.status_code < 400 and case.path != "/v1/health":
            failures.append(f"{where}: {response.status_code} without a valid token")

    probe()


def _cross_tenant(
    operation: Any,
    base: str,
    secret: str,
    theirs: dict[str, str],
    foreign: dict[str, str],
    failures: list[str],
) -> None:
    """The operation on globex's object with acme's token (an operator of acme) answers
    exactly as on an object that does not exist (404, the same body but for the id acme
    sent): acme cannot tell whether it exists, and nothing else of globex's is in the
    answer."""
    nobody = {name: value[:-4] + "0000" for name, value in theirs.items()}
    sent = set(theirs.values())
    answers = []
    for ids in (theirs, nobody):
        path = operation.path.format(**ids)
        body = None
        if operation.method.upper() == "POST":
            body = {"text": "hi", "reason": "x", "note": "x", "arguments_hash": "0" * 64}
        response = httpx.request(
            operation.method.upper(),
            f"{base}{path}",
            json=body,
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        )
        text = response.text
        for name, value in ids.items():
            text = text.replace(value, f"{{{name}}}")
        answers.append((response.status_code, text))
    where = f"{operation.method.upper()} {operation.path} (acme's token, globex's object)"
    if answers[0][0] not in (403, 404) or answers[0] != answers[1]:
        failures.append(f"{where}: {answers[0]}, but for an unknown run: {answers[1]}")
    if leaked := _leaks(answers[0][1], {k: v for k, v in foreign.items() if v not in sent}):
        failures.append(f"{where}: the answer carries {', '.join(leaked)}")
