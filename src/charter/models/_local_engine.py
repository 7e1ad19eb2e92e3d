"""The llama.cpp engine behind the ``local`` provider: verify once, load once, generate.

A model file is loaded once per process and path and shared by every agent that names it;
its sha256 is checked once per process before the first load. llama.cpp contexts are not
thread-safe, so one lock serializes the calls to a loaded model. The context keeps the tokens
of the last call in its KV cache and the next call decodes only what differs after the common
prefix (the system prompt and the tools, and a run's history when the same run calls again).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charter.errors import ModelError

PINNED_SHA256 = {
    "qwen2.5-coder-0.5b-instruct-q4_k_m": (
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    ),
}
"""Models that ``scripts/get-local-model`` fetches, by name, with the hash their file must have."""
GET_MODEL_HINT = "run scripts/get-local-model to fetch and verify the model file"
_BATCH = 512


def model_dir() -> Path:
    """Where local models are kept: ``$CHARTER_MODEL_DIR``, else ``~/.cache/charter/models``."""
    env = os.environ.get("CHARTER_MODEL_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "charter" / "models"


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class Generation:
    """What one call produced, with its token counts and timings."""

    text: str
    prompt_tokens: int
    output_tokens: int
    reused_tokens: int
    """Prompt tokens whose keys and values were already in the cache (not decoded again)."""
    finished: bool
    """True when the model ended its answer; False when it hit ``max_tokens`` first."""
    prompt_s: float
    generate_s: float


class LoadedModel:
    """One GGUF file in memory, with one context and the lock that serializes its use."""

    def __init__(self, path: Path, llama: Any) -> None:
        self.path = path
        self._llama = llama
        self.lock = threading.Lock()
        started = time.perf_counter()
        params = llama.LlamaModelParams()
        params.n_gpu_layers = 0
        self._model = llama.LlamaModel(str(path), params)
        self.vocab = self._model.get_vocab()
        self.load_s = time.perf_counter() - started
        self.chat_template: str = self._model.get_default_chat_template() or ""
        self._ctx: Any = None
        self._ctx_tokens = 0
        self._cached: list[int] = []

    def tokenize(self, text: str) -> list[int]:
        return list(self.vocab.tokenize(text, add_special=True, parse_special=True))

    def token_text(self, token: int) -> str:
        return str(self.vocab.token_to_piece(token, special=True))

    def generate(
        self,
        prompt: list[int],
        *,
        grammar: str,
        temperature: float,
        max_tokens: int,
        threads: int,
        context_tokens: int,
    ) -> Generation:
        """Decode ``prompt`` (reusing the cached prefix) and sample under ``grammar``."""
        with self.lock:
            ctx = self._context(context_tokens, threads)
            try:
                return self._generate(ctx, prompt, grammar, temperature, max_tokens)
            except BaseException:
                self._forget()
                raise

    def _context(self, context_tokens: int, threads: int) -> Any:
        if self._ctx is None or self._ctx_tokens != context_tokens:
            params = self._llama.LlamaContextParams()
            params.n_ctx = context_tokens
            params.n_batch = _BATCH
            params.n_threads = threads
            params.n_threads_batch = threads
            params.no_perf = True
            self._ctx = self._llama.LlamaContext(self._model, params)
            self._ctx_tokens = context_tokens
            self._cached = []
        self._ctx.set_n_threads(threads, threads)
        return self._ctx

    def _forget(self) -> None:
        """Drop the cached prefix (after a failure the KV cache's content is unknown)."""
        self._cached = []
        if self._ctx is not None:
            self._ctx.kv_cache_clear()

    def _sampler(self, grammar: str, temperature: float) -> Any:
        llama = self._llama
        sampler = llama.LlamaSampler(llama.LlamaSamplerChainParams())
        sampler.add_grammar(self.vocab, grammar, "root")  # first: it masks what may follow
        if temperature <= 0.0:
            sampler.add_greedy()
        else:
            sampler.add_top_k(40)
            sampler.add_top_p(0.95, 1)
            sampler.add_temp(temperature)
            sampler.add_dist(int.from_bytes(os.urandom(4), "little"))
        return sampler

    def _generate(
        self, ctx: Any, prompt: list[int], grammar: str, temperature: float, max_tokens: int
    ) -> Generation:
        llama = self._llama
        started = time.perf_counter()
        reused = _common_prefix(self._cached, prompt)
        if reused == len(prompt):
            reused -= 1  # at least one token must be decoded to get the next token's logits
        if reused < len(self._cached):
            ctx.memory_seq_rm(0, reused, -1)
        self._cached = prompt[:reused]
        for i in range(reused, len(prompt), _BATCH):
            batch = prompt[i : i + _BATCH]
            ctx.decode(llama.llama_batch_get_one(batch, i))
            self._cached.extend(batch)
        prompt_done = time.perf_counter()
        sampler = self._sampler(grammar, temperature)
        pieces: list[str] = []
        finished = False
        position = len(prompt)
        for _ in range(max_tokens):
            token = sampler.sample(ctx, -1)
            if self.vocab.is_eog(token):
                finished = True
                break
            pieces.append(self.token_text(token))
            ctx.decode(llama.llama_batch_get_one([token], position))
            self._cached.append(token)
            position += 1
        return Generation(
            text="".join(pieces),
            prompt_tokens=len(prompt),
            output_tokens=len(pieces),
            reused_tokens=reused,
            finished=finished,
            prompt_s=prompt_done - started,
            generate_s=time.perf_counter() - prompt_done,
        )


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


_loaded: dict[Path, LoadedModel] = {}
_verified: set[tuple[Path, str]] = set()
_loading = threading.Lock()


def load(path: Path, *, sha256: str | None) -> LoadedModel:
    """The loaded model at ``path``, loading (and first verifying) it once per process."""
    from cyllama.llama import llama_cpp

    with _loading:
        if sha256 is not None and (path, sha256) not in _verified:
            _verify(path, sha256)
            _verified.add((path, sha256))
        loaded = _loaded.get(path)
        if loaded is None:
            _check_gguf(path)
            llama_cpp.disable_logging()
            llama_cpp.ggml_backend_load_all()
            try:
                loaded = LoadedModel(path, llama_cpp)
            except (RuntimeError, ValueError, OSError) as exc:
                raise ModelError(
                    f"llama.cpp could not load the model file {path}: {exc}", hint=GET_MODEL_HINT
                ) from exc
            _loaded[path] = loaded
        return loaded


def _verify(path: Path, expected: str) -> None:
    try:
        actual = file_sha256(path)
    except OSError as exc:
        raise ModelError(f"cannot read the model file {path}: {exc}", hint=GET_MODEL_HINT) from exc
    if actual != expected.lower():
        raise ModelError(
            f"the model file {path} fails its hash: sha256 {actual}, expected {expected}; "
            "it is refused",
            hint=GET_MODEL_HINT,
        )


def _check_gguf(path: Path) -> None:
    """Refuse a file that is not GGUF before llama.cpp's parser sees it (it may crash on one)."""
    from cyllama.utils.validation import validate_gguf_file

    try:
        validate_gguf_file(str(path), kind="GGUF model")
    except (OSError, ValueError, TypeError) as exc:
        raise ModelError(
            f"the model file {path} is not a usable GGUF file: {exc}", hint=GET_MODEL_HINT
        ) from exc
