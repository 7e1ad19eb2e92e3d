"""OIDC/JWT bearer tokens on a real `charter serve`: RSA keys made here, the issuer's keys as
a JWKS file and as a JWKS URL served by a local process. Every way a JWT can be wrong is a
401 naming it; a valid one starts a run for its tenant and cannot see another tenant's."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from tests.helpers.server import serving

ISSUER, AUDIENCE = "https://login.example.com/", "charter"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY, OTHER = _key(), _key()


def _jwks(path: Path) -> None:
    public = RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True)
    path.write_text(json.dumps({"keys": [{**public, "kid": "k1", "alg": "RS256", "use": "sig"}]}))


def _jwt(key: Any = KEY, kid: str = "k1", alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "ann@acme.com", "tenant": "acme",
            "roles": ["support"], "iat": now, "exp": now + 600, **claims}  # fmt: skip
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def _unsigned() -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "eve", "tenant": "acme", "exp": now + 600}
    return jwt.encode(claims, None, algorithm="none", headers={"kid": "k1"})


@pytest.fixture
def agent(tmp_path: Path) -> str:
    (tmp_path / "prompt.md").write_text("You help.")
    (tmp_path / "script.json").write_text(json.dumps([{"content": "done"}]))
    (tmp_path / "agent.yaml").write_text(
        "agent:\n  name: helper\n  instructions: prompt.md\n"
        "  model: {provider: scripted, script: script.json}\n  tools: []\n"
    )
    return "agent.yaml"


def _config(tmp: Path, **source: str) -> str:
    oidc = {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["RS256"], **source}
    (tmp / "serve.yaml").write_text(json.dumps({"oidc": oidc}))
    return "serve.yaml"


def _get(base: str, token: str, path: str = "/v1/runs") -> httpx.Response:
    return httpx.get(base + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _start(base: str, token: str) -> str:
    started = httpx.post(
        base + "/v1/runs", json={"agent": "helper", "input": "hi"},
        headers={"Authorization": f"Bearer {token}"}, timeout=30,
    )  # fmt: skip
    assert started.status_code == 201, started.text
    return str(started.json()["run_id"])


REFUSED = {
    "expired": (lambda: _jwt(exp=int(time.time()) - 60), "has expired"),
    "not yet valid": (lambda: _jwt(nbf=int(time.time()) + 600), "not valid yet"),
    "wrong issuer": (lambda: _jwt(iss="https://evil.example.com/"), "issuer"),
    "wrong audience": (lambda: _jwt(aud="someone-else"), "audience"),
    "bad signature": (lambda: _jwt(key=OTHER), "signature does not verify"),
    "alg none": (_unsigned, "algorithm 'none' is not allowed"),
    "unknown kid": (lambda: _jwt(kid="k9"), "key 'k9' is not one of the issuer's"),
    "no tenant claim": (lambda: _jwt(tenant=None), "no tenant claim 'tenant'"),
    "no exp": (lambda: _jwt(exp=None), "exp"),
}


def test_jwts_from_a_jwks_file(tmp_path: Path, agent: str, store_url: str) -> None:
    _jwks(tmp_path / "jwks.json")
    config = _config(tmp_path, jwks_file=str(tmp_path / "jwks.json"))
    with serving(tmp_path, store_url, agent, config=config) as base:
        for name, (make, why) in REFUSED.items():
            answer = _get(base, make())
            assert answer.status_code == 401, (name, answer.text)
            assert why in answer.json()["error"]["message"], (name, answer.text)

        mine = _start(base, _jwt())
        theirs = _start(base, _jwt(sub="bob@globex.com", tenant="globex"))
        seen = _get(base, _jwt(), f"/v1/runs/{mine}").json()
        assert (seen["tenant"], seen["principal"]) == ("acme", "ann@acme.com")
        assert _get(base, _jwt(), f"/v1/runs/{theirs}").status_code == 404
        listed = [r["run_id"] for r in _get(base, _jwt()).json()["runs"]]
        assert listed == [mine]
        # Several tenants: the Charter-Tenant header picks one the token grants.
        both = _jwt(tenant=["acme", "globex"])
        assert _get(base, both).status_code == 401
        picked = httpx.get(base + f"/v1/runs/{theirs}", timeout=30, headers={
            "Authorization": f"Bearer {both}", "Charter-Tenant": "globex"})  # fmt: skip
        assert picked.status_code == 200, picked.text


@pytest.fixture
def jwks_url(tmp_path: Path) -> Iterator[str]:
    """The issuer's keys served over HTTP by a process of their own."""
    (tmp_path / "issuer").mkdir()
    _jwks(tmp_path / "issuer" / "jwks.json")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path / "issuer", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/jwks.json"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the JWKS server did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait()


def test_jwts_from_a_jwks_url(tmp_path: Path, agent: str, db_url: str, jwks_url: str) -> None:
    with serving(tmp_path, db_url, agent, config=_config(tmp_path, jwks_url=jwks_url)) as base:
        run_id = _start(base, _jwt())
        assert _get(base, _jwt(), f"/v1/runs/{run_id}").status_code == 200
        for name in ("unknown kid", "bad signature", "expired"):
            make, why = REFUSED[name]
            answer = _get(base, make())
            assert answer.status_code == 401 and why in answer.text, (name, answer.text)


def test_a_bad_oidc_config_is_refused_naming_the_key(tmp_path: Path, db_url: str) -> None:
    from tests.helpers.cli import run_charter

    oidc = "oidc:\n  issuer: x\n  audience: y\n  jwks_file: k.json\n"
    for extra, named in (("  colour: blue\n", "oidc.colour"), ("  algorithms: [HS256]\n", "HS256")):
        (tmp_path / "serve.yaml").write_text(oidc + extra)
        done = run_charter(tmp_path, "serve", "--db", db_url, "--config", "serve.yaml")
        assert done.returncode == 2, done.stderr
        assert named in done.stderr and "Traceback" not in done.stderr
