"""Several `charter serve` processes on one PostgreSQL database, beside a `charter worker`:
a request retried against another server with the same Idempotency-Key starts no second
run, and every server answers for every run."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from tests.helpers.server import serving, wait_for, working, write_helper_agent
from tests.integration.test_server_api import token


def test_two_servers_on_one_database_start_one_run_per_key_and_both_see_it(
    tmp_path: Path, pg_url: str
) -> None:
    write_helper_agent(tmp_path)
    alice = token(tmp_path, pg_url, "alice@acme.com", "acme")
    auth = {"Authorization": f"Bearer {alice['token']}"}
    with (
        serving(tmp_path, pg_url, "agent.yaml") as one,
        serving(tmp_path, pg_url, "agent.yaml") as two,
        working(tmp_path, pg_url),
    ):
        start = {"agent": "helper", "input": "refund my order"}

        def post(base: str, key: str) -> httpx.Response:
            headers = {**auth, "Idempotency-Key": key}
            return httpx.post(f"{base}/v1/runs", json=start, headers=headers, timeout=30)

        with ThreadPoolExecutor(8) as pool:  # the same key to both servers at once, 4 times
            answers = list(pool.map(post, [one, two] * 4, ["ticket-9"] * 8))
        assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
        run_ids = {a.json()["run_id"] for a in answers}
        assert len(run_ids) == 1, run_ids
        [run_id] = run_ids

        with (
            httpx.Client(base_url=one, headers=auth) as a,
            httpx.Client(base_url=two, headers=auth) as b,
        ):
            wait_for(a, f"/v1/runs/{run_id}", status="waiting")
            sent = b.post(f"/v1/runs/{run_id}/messages", json={"text": "order 7"})
            assert sent.status_code == 202, sent.text
            wait_for(a, f"/v1/runs/{run_id}", status="succeeded")
            assert [r["run_id"] for r in b.get("/v1/runs").json()["runs"]] == [run_id]
            assert (
                a.get(f"/v1/runs/{run_id}/events").json()
                == b.get(f"/v1/runs/{run_id}/events").json()
            )
