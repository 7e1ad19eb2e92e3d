"""The web console in a real browser (headless Debian Chromium driven by Playwright) against
a real `charter serve` and `charter worker`: log in with a token, see the runs list, watch a
run finish live, a refused token says so; a lead grants a held refund in the approvals inbox
and an operator switches writes off on the kill switch page."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright, expect
from tests.helpers.server import serving, wait_for, working, write_helper_agent
from tests.integration.test_server_api import client, token
from tests.integration.test_server_approvals import TICKET

from charter.demo import AGENT_FILE
from charter.testing.systems import DEFAULT_FILE, Systems

# A browser, a server and a worker per test: on a loaded 2-core machine that can pass the
# suite's 120 s default, which is about a hung test, not a slow one.
pytestmark = pytest.mark.timeout(300)

CHROMIUM = "/usr/lib/chromium/chromium"  # Debian's package; .ci/run installs it
TIMEOUT_MS = 30_000


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    return write_helper_agent(tmp_path)


def in_browser(base: str, script: Callable[[Page], Awaitable[None]]) -> None:
    async def main() -> None:
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
            )
            try:
                page = await browser.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                expect.set_options(timeout=TIMEOUT_MS)
                await page.goto(base + "/")
                await script(page)
            finally:
                await browser.close()

    asyncio.run(main())


async def log_in(page: Page, secret: str) -> None:
    await page.get_by_label("API token").fill(secret)
    await page.get_by_role("button", name="Log in").click()


def test_log_in_see_the_runs_and_watch_one_finish_live(
    tmp_path: Path, agent: Path, store_url: str
) -> None:
    alice = token(tmp_path, store_url, "alice@acme.com", "acme")
    with serving(tmp_path, store_url, "agent.yaml") as base, working(tmp_path, store_url):
        api = client(base, alice["token"])
        run_id = api.post("/v1/runs", json={"agent": "helper", "input": "hi"}).json()["run_id"]
        wait_for(api, f"/v1/runs/{run_id}", status="waiting")

        async def script(page: Page) -> None:
            await log_in(page, alice["token"])
            row = page.locator(f'tr[data-run="{run_id}"]')
            await expect(row).to_contain_text("waiting")
            await expect(row).to_contain_text("helper")
            await page.get_by_label("Status").select_option("succeeded")
            await page.get_by_role("button", name="Apply").click()
            await expect(page.get_by_text("No runs match.")).to_be_visible()
            await page.get_by_label("Status").select_option("")
            await page.get_by_role("button", name="Apply").click()
            await page.get_by_role("link", name=run_id).click()
            await expect(page.locator("#run-status")).to_have_text("waiting")
            await expect(page.get_by_label("Timeline")).to_contain_text("waiting for message")
            # The run moves on while the page is open: the page follows it over SSE.
            sent = api.post(f"/v1/runs/{run_id}/messages", json={"text": "order 7"})
            assert sent.status_code == 202
            await expect(page.get_by_role("status").first).to_have_text("finished: succeeded")
            await expect(page.locator("#run-status")).to_have_text("succeeded")
            await expect(page.get_by_label("Timeline")).to_contain_text("run finished: succeeded")
            await expect(page.locator("#totals")).to_contain_text("totals: 2 steps")
            assert await page.evaluate("sessionStorage.getItem('charter.token')") == alice["token"]
            await page.get_by_role("link", name="Runs").first.click()
            await expect(page.locator(f'tr[data-run="{run_id}"]')).to_contain_text("succeeded")

        in_browser(base, script)


def test_a_refused_token_is_a_clear_message_and_nothing_is_kept(
    tmp_path: Path, agent: Path, db_url: str
) -> None:
    with serving(tmp_path, db_url, "agent.yaml") as base:

        async def script(page: Page) -> None:
            await log_in(page, "charter_nope_nothing")
            error = page.get_by_role("alert")
            await expect(error).to_contain_text("That token was refused")
            await expect(error).to_contain_text("charter tokens create")
            assert await page.evaluate("sessionStorage.getItem('charter.token')") is None
            await expect(page.get_by_label("API token")).to_be_focused()

        in_browser(base, script)


def test_a_lead_grants_a_held_refund_and_an_operator_switches_writes_off_in_the_console(
    tmp_path: Path, db_url: str
) -> None:
    """The approvals inbox shows the held 120.00 refund; the lead grants it in the browser and
    the run completes with one refund in the ledger. Then the kill switch page switches writes
    off, and the next run's refund is stopped by it: no second refund."""
    systems = Systems(tmp_path / DEFAULT_FILE)
    systems.seed()
    desk = token(tmp_path, db_url, "desk@acme.com", "acme")["token"]
    lee = token(tmp_path, db_url, "lee@acme.com", "acme", "--role", "support_lead")["token"]
    ops = token(tmp_path, db_url, "ops@acme.com", "acme", "--role", "operator")["token"]
    with serving(tmp_path, db_url, str(AGENT_FILE)) as base, working(tmp_path, db_url):
        requester = client(base, desk)
        run_id = requester.post(
            "/v1/runs", json={"agent": "support_triage", "input": TICKET}
        ).json()["run_id"]
        wait_for(requester, f"/v1/runs/{run_id}", status="waiting")

        async def grant(page: Page) -> None:
            await log_in(page, lee)
            await page.get_by_role("link", name="Approvals").click()
            card = page.locator(".card", has_text="refund")
            await expect(card).to_contain_text(run_id)
            await expect(card).to_contain_text("120")
            await card.get_by_label("Note or reason").fill("agreed on the phone")
            await card.get_by_role("button", name="Grant").click()
            await expect(page.get_by_text("Nothing is waiting for a decision.")).to_be_visible()

        in_browser(base, grant)
        wait_for(requester, f"/v1/runs/{run_id}", status="succeeded")
        assert len([r for r in systems.refunds() if r["run_id"] == run_id]) == 1

        async def switch_off(page: Page) -> None:
            await log_in(page, ops)
            await page.get_by_role("link", name="Kill switch").click()
            await page.get_by_label("Reason").fill("incident 12")
            await page.get_by_role("button", name="Switch writes off").click()
            await expect(page.get_by_text("incident 12").first).to_be_visible()

        in_browser(base, switch_off)
        state = client(base, ops).get("/v1/killswitch").json()
        assert state["writes_blocked"] and state["switches"][0]["reason"] == "incident 12", state
        parked = requester.post(
            "/v1/runs",
            json={"agent": "support_triage", "input": TICKET.replace("T-2007", "T-2008")},
        ).json()["run_id"]
        wait_for(requester, f"/v1/runs/{parked}", status="succeeded")
        events = requester.get(f"/v1/runs/{parked}/events").json()
        stopped = [
            e for e in events if e["type"] == "policy_evaluated" and e["body"]["tool"] == "refund"
        ]
        assert stopped and all(e["body"]["kill_switch"] for e in stopped), stopped
        assert [r for r in systems.refunds() if r["run_id"] == parked] == []
