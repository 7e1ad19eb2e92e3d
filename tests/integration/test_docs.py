"""The README's examples run as written."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tests.helpers.cli import run_charter
from tests.helpers.server import serving

from charter.testing import FakeOpenAIServer
from charter.testing.systems import Systems

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.DOTALL)


@pytest.mark.replay_exempt(
    "its script's tools are __main__ functions, which import only in that script:"
    " replay is unavailable elsewhere by design"
)
def test_readme_python_example_runs(tmp_path: Path) -> None:
    example = _blocks("python")[0]
    script = tmp_path / "example.py"
    script.write_text(example)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0].split(" ", 2)
    assert first[1:] == ["succeeded", "Refunded 20.00 on order 1042."]
    assert "tool_call_started" in done.stdout  # the refund's intent was committed


@pytest.mark.replay_exempt(
    "its script's tools are __main__ functions, which import only in that script:"
    " replay is unavailable elsewhere by design"
)
def test_readme_fencing_example_runs(tmp_path: Path) -> None:
    (example,) = [b for b in _blocks("python") if "fenced=True" in b]
    script = tmp_path / "fencing.py"
    script.write_text(example)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "succeeded [35.0]"


def test_readme_opens_with_the_two_commands() -> None:
    (commands,) = _blocks("sh")[:1]
    lines = [line.split("#")[0].strip() for line in commands.strip().splitlines()]
    assert lines == ["make demo", "make test"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci


_charter = run_charter


def test_example_agent_runs_offline(tmp_path: Path) -> None:
    shutil.copytree(README.parent / "examples", tmp_path / "examples")
    done = _charter(tmp_path, "run", "examples/support/agent.yaml", "--input", "Order 1002 cracked")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1] == "succeeded:"
    systems = Systems(tmp_path / "charter-demo-systems.db", create=False)
    assert [r["amount"] for r in systems.refunds()] == [35.0]


def test_readme_agent_file_runs_against_an_openai_compatible_endpoint(tmp_path: Path) -> None:
    shutil.copytree(README.parent / "examples", tmp_path / "examples")
    yaml_block = _blocks("yaml")[0]
    responses = [
        {"tool_calls": [{"name": "kb_search", "arguments": '{"query": "descale"}'}]},
        {"content": "Use the descaling kit."},
    ]
    with FakeOpenAIServer(responses=responses) as server:
        agent_text = yaml_block.replace("http://127.0.0.1:8080/v1", server.base_url)
        agent_file = tmp_path / "examples" / "support" / "readme_agent.yaml"
        agent_file.write_text(agent_text)
        done = _charter(tmp_path, "run", str(agent_file), "--input", "How do I descale?", "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "succeeded"
    assert run["agent_name"] == "support_triage" and run["agent_version"] == "3"
    assert [r["model"] for r in server.requests] == ["qwen2.5-0.5b-instruct"] * 2
    names = {t["function"]["name"] for t in server.requests[0]["tools"]}
    assert names == {"kb_search", "refund"}


def test_readme_serve_example_runs(tmp_path: Path) -> None:
    """The Serve section as written: the token command, the server with the example agent,
    and the curl request's body and headers (the worker needs the local model; not here)."""
    (block,) = [b for b in _blocks("sh") if "charter serve" in b]
    shutil.copytree(README.parent / "examples", tmp_path / "examples")
    lines = [line.split("   #")[0] for line in block.replace("\\\n", " ").splitlines()]
    create = shlex.split(lines[0])
    assert create[:3] == ["charter", "tokens", "create"]
    made = run_charter(tmp_path, *create[1:], "--json")
    assert made.returncode == 0, made.stderr
    secret = json.loads(made.stdout)["token"]
    serve = shlex.split(lines[1].rstrip("& "))
    assert serve[:2] == ["charter", "serve"]
    db, agent = serve[serve.index("--db") + 1], serve[serve.index("--agent") + 1]
    curl = shlex.split(lines[3])
    given = [curl[i + 1] for i, arg in enumerate(curl) if arg == "-H"]
    headers = dict(h.split(": ", 1) for h in given)
    headers["Authorization"] = f"Bearer {secret}"
    body = curl[curl.index("-d") + 1]
    with serving(tmp_path, db, agent) as base:
        posted = httpx.post(f"{base}/v1/runs", content=body, headers=headers, timeout=30)
        again = httpx.post(f"{base}/v1/runs", content=body, headers=headers, timeout=30)
    assert posted.status_code == 201, posted.text
    assert again.json() == posted.json()  # the same Idempotency-Key: the same run


def test_readme_webhook_signing_example_signs_as_the_server_checks() -> None:
    from charter.webhooks import verify

    (block,) = [b for b in _blocks("python") if "Charter-Signature" in b and "urllib.request" in b]
    scope: dict[str, object] = {}
    exec(block, scope)  # builds the request; sending it is left to the reader
    request = scope["request"]
    headers = {k.lower(): v for k, v in request.header_items()}  # type: ignore[attr-defined]
    secret = scope["secret"]
    checked = verify(secret, headers, request.data, now=float(headers["charter-timestamp"]))  # type: ignore[arg-type, attr-defined]
    assert checked.delivery_id == "evt-4711"
