"""Text embedders behind one async interface.

- ``HashingEmbedder``: dependency-free signed feature hashing of word uni/bi-grams and
  character trigrams plus a few shape features (the default).
- ``WordLlamaEmbedder``: static token embeddings from the ``wordllama`` package, whose wheel
  ships its weights; loaded strictly from the installed files, never from the network.
- ``OpenAIEmbedder``: an OpenAI-compatible ``/v1/embeddings`` endpoint (vLLM serving an
  embedding model in the fleet), with concurrent calls coalesced into batches.

Local embedders compute inline: they take well under a millisecond, less than a thread hop.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
from numpy.typing import NDArray

Vectors = NDArray[np.float32]
_WORD = re.compile(r"[a-z]+|\d+|[^\sa-z\d]")


class Embedder(Protocol):
    @property
    def id(self) -> str:
        """Names the embedder and every setting that changes its vectors."""
        ...

    @property
    def dim(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """One row per text, float32."""
        ...


class EmbedderError(RuntimeError):
    pass


class _InProcess:
    """An embedder computed in this process: ``embed`` runs ``embed_sync`` inline, since
    both local embedders take well under a millisecond, less than a thread hop costs."""

    _id: str
    _dim: int

    @property
    def id(self) -> str:
        return self._id

    @property
    def dim(self) -> int:
        return self._dim

    async def embed(self, texts: Sequence[str]) -> Vectors:
        return self.embed_sync(texts)

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        raise NotImplementedError


class HashingEmbedder(_InProcess):
    """Signed hashing trick (crc32: stable across processes, unlike ``hash``)."""

    def __init__(self, dim: int = 4096) -> None:
        if dim < 64 or dim & (dim - 1):
            raise ValueError(f"dim must be a power of two >= 64, got {dim}")
        self._dim = dim
        self._id = f"hashing-v1-{dim}"

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, t in enumerate(texts):
            self._fill(t, out[i])
        return out

    def _fill(self, text: str, row: Vectors) -> None:
        low = text.lower()
        words = _WORD.findall(low)
        feats = words + [a + " " + b for a, b in itertools.pairwise(words)]
        feats += [low[i : i + 4] for i in range(0, max(len(low) - 3, 0), 2)]
        mask = self._dim - 1
        counts: dict[int, float] = {}
        for f in feats:
            h = zlib.crc32(f.encode())
            j = h & mask
            counts[j] = counts.get(j, 0.0) + (1.0 if h & 0x80000000 else -1.0)
        if counts:
            idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            val = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
            row[idx] = np.sign(val) * np.log1p(np.abs(val))
            row /= max(float(np.linalg.norm(row)), 1e-6)
        # Shape features in fixed slots: length and digit density say a lot about difficulty.
        row[0] = np.log1p(len(low)) / 8.0
        row[1] = sum(c.isdigit() for c in low) / max(len(low), 1)
        row[2] = low.count("$") / max(len(low), 1) * 10


class WordLlamaEmbedder(_InProcess):
    """``wordllama`` (optional dependency) loaded from the wheel's bundled files only."""

    def __init__(self, config: str = "l2_supercat", dim: int = 256) -> None:
        try:
            # importlib keeps this optional dependency (and its untyped deps) out of mypy's way
            wordllama = importlib.import_module("wordllama")
            safe_open = importlib.import_module("safetensors").safe_open
            tokenizer_cls = importlib.import_module("tokenizers").Tokenizer
            inference_cls = importlib.import_module("wordllama.inference").WordLlamaInference
        except ImportError as err:
            raise EmbedderError("wordllama is not installed (pip install wordllama)") from err
        root = Path(str(wordllama.__file__)).parent
        weights = root / "weights" / f"{config}_{dim}.safetensors"
        tok = root / "tokenizers" / f"{config}_tokenizer_config.json"
        if not weights.exists() or not tok.exists():
            raise EmbedderError(f"wordllama files for {config}/{dim} are not bundled in {root}")
        with safe_open(str(weights), framework="np", device="cpu") as f:
            table = f.get_tensor("embedding.weight")
        self._model: Any = inference_cls(table, tokenizer_cls.from_file(str(tok)), binary=False)
        self._id = f"wordllama-{getattr(wordllama, '__version__', '?')}-{config}-{dim}"
        self._dim = dim

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        v = self._model.embed(list(texts), norm=True)
        return np.asarray(v, dtype=np.float32).reshape(len(texts), self._dim)


class OpenAIEmbedder:
    """``POST {base_url}/v1/embeddings``. Concurrent ``embed`` calls issued within
    ``linger_s`` of each other share one upstream request of up to ``max_batch`` inputs."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        model: str,
        dim: int,
        max_batch: int = 64,
        linger_s: float = 0.001,
    ) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + "/v1/embeddings"
        self._model = model
        self._dim = dim
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._pending: list[tuple[str, asyncio.Future[Vectors]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()  # strong refs until done

    @property
    def id(self) -> str:
        return f"openai:{self._model}:{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if len(texts) >= self._max_batch:
            chunks = [texts[i : i + self._max_batch] for i in range(0, len(texts), self._max_batch)]
            parts = await asyncio.gather(*(self._post(list(c)) for c in chunks))
            return np.concatenate(parts)
        loop = asyncio.get_running_loop()
        futs: list[asyncio.Future[Vectors]] = []
        for t in texts:
            fut: asyncio.Future[Vectors] = loop.create_future()
            self._pending.append((t, fut))
            futs.append(fut)
        if len(self._pending) >= self._max_batch:
            self._flush()
        elif self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_later())
        rows = await asyncio.gather(*futs)
        return np.stack(rows) if rows else np.zeros((0, self._dim), np.float32)

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._linger_s)
        self._flusher = None
        self._flush()

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.create_task(self._send(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _send(self, batch: list[tuple[str, asyncio.Future[Vectors]]]) -> None:
        try:
            vecs = await self._post([t for t, _ in batch])
        except Exception as err:  # every waiter must learn of the failure
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
            return
        for (_, fut), v in zip(batch, vecs, strict=True):
            if not fut.done():
                fut.set_result(v)

    async def _post(self, texts: list[str]) -> Vectors:
        try:
            resp = await self._client.post(self._url, json={"model": self._model, "input": texts})
            resp.raise_for_status()
            data = sorted(resp.json()["data"], key=lambda d: d["index"])
            out = np.asarray([d["embedding"] for d in data], dtype=np.float32)
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as err:
            raise EmbedderError(f"{self._url}: {err}") from err
        if out.shape != (len(texts), self._dim):
            raise EmbedderError(f"{self._url}: expected {len(texts)}x{self._dim}, got {out.shape}")
        norms = np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)
        result: Vectors = (out / norms).astype(np.float32)
        return result


def make_embedder(spec: str) -> Embedder:
    """Local embedders by name: ``hashing`` / ``hashing:DIM`` / ``wordllama``."""
    name, _, arg = spec.partition(":")
    if name == "hashing":
        return HashingEmbedder(int(arg) if arg else 4096)
    if name == "wordllama":
        return WordLlamaEmbedder(dim=int(arg) if arg else 256)
    raise ValueError(f"unknown embedder {spec!r} (hashing[:DIM] | wordllama[:DIM])")
