"""A vLLM-V1-style engine: continuous batching, chunked prefill, a maximum batch, KV cache in
blocks and preemption by recomputation when the blocks run out.

Each step takes the running decoders (one token each), then spends what is left of the
token budget on prefill chunks (running first, then waiting requests in FIFO order while a
batch slot and KV blocks are free). Its time comes from the ``StepModel``; requests that
arrive during a step join at the next step boundary, as in vLLM.

The decoders are kept in aggregate so a step costs O(prefilling + finishing) rather than
O(batch): a decoder entered at step ``t0`` with ``base`` KV tokens holds ``base + k - t0``
at step ``k``, so the KV total is one sum plus ``n * k``, and finishes come off a heap.
KV blocks are counted as tokens / block size plus half a block per sequence (the expected
partial last block), not per sequence exactly.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import Any

from aragog.sim.perf import StepModel

_WAITING, _PREFILL, _DECODE, _DONE = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class EngineParams:
    max_num_seqs: int = 256
    max_batched_tokens: int = 2048
    block_size: int = 16


@dataclass(slots=True, eq=False)
class Seq:
    payload: Any
    prompt: int  # tokens to hold in KV before the first output token
    out: int  # output tokens to generate (>= 1)
    arrived: float = 0.0
    first_token: float | None = None
    gen: int = 0  # output tokens generated so far (kept across preemption)
    filled: int = 0  # prompt tokens prefilled
    state: int = _WAITING
    base: int = 0
    t0: int = 0
    order: int = 0
    preempted: int = 0  # times preempted; also the epoch of its heap entry
    prompt0: int = 0  # the prompt as submitted


@dataclass(slots=True)
class EngineStats:
    steps: int = 0
    busy_s: float = 0.0
    preemptions: int = 0
    tokens_out: int = 0
    tokens_in: int = 0
    finished: int = 0
    max_running: int = 0


class SimEngine:
    def __init__(
        self, engine_id: str, model: StepModel, params: EngineParams | None = None
    ) -> None:
        self.engine_id = engine_id
        self.model = model
        self.p = params or EngineParams()
        self.capacity_blocks = model.kv_capacity_tokens // self.p.block_size
        self.waiting: deque[Seq] = deque()  # FIFO; preempted requests go back to the front
        self.prefilling: list[Seq] = []
        self._heap: list[tuple[int, int, int, Seq]] = []  # (finish step, order, epoch, seq)
        self._decoders: dict[int, Seq] = {}  # order -> seq, insertion (admission) order
        self._kv_sum = 0  # sum over decoders of (base - t0)
        self._k = 0  # decode steps taken
        self._order = 0
        self._step: tuple[float, list[tuple[Seq, int]], int] | None = None
        self.stats = EngineStats()

    # -- what the fleet view reads ----------------------------------------------------------

    @property
    def running(self) -> int:
        return len(self._decoders) + len(self.prefilling)

    @property
    def queued(self) -> int:
        return len(self.waiting)

    def kv_tokens(self) -> int:
        return self._kv_sum + len(self._decoders) * self._k + sum(s.filled for s in self.prefilling)

    def used_blocks(self) -> int:
        n = len(self._decoders) + len(self.prefilling)
        return (self.kv_tokens() + n * self.p.block_size // 2) // self.p.block_size

    def kv_usage(self) -> float:
        return min(1.0, self.used_blocks() / max(1, self.capacity_blocks))

    @property
    def next_time(self) -> float | None:
        return None if self._step is None else self._step[0]

    # -- events -----------------------------------------------------------------------------

    def submit(self, seq: Seq, now: float) -> None:
        seq.arrived = now
        seq.prompt0 = seq.prompt
        seq.order = self._order
        self._order += 1
        self.waiting.append(seq)
        if self._step is None:
            self._start(now)

    def finish_step(self, now: float) -> list[Seq]:
        """Apply the step that ends at ``now``; start the next one; return finished seqs."""
        assert self._step is not None and self._step[0] <= now + 1e-12
        _, chunks, n_dec = self._step
        self._step = None
        done: list[Seq] = []
        if n_dec:
            self._k += 1
            self.stats.tokens_out += n_dec
            heap = self._heap
            while heap and heap[0][0] <= self._k:
                _, _, epoch, s = heapq.heappop(heap)
                if s.state != _DECODE or epoch != s.preempted:
                    continue  # preempted since: a stale heap entry
                del self._decoders[s.order]
                self._kv_sum -= s.base - s.t0
                s.gen = s.out
                s.state = _DONE
                done.append(s)
        for s, c in chunks:
            s.filled += c
            if s.filled >= s.prompt:
                self.prefilling.remove(s)
                if s.first_token is None:
                    s.first_token = now
                s.gen += 1  # the prefill step samples the first (or next) token
                self.stats.tokens_out += 1
                if s.gen >= s.out:
                    s.state = _DONE
                    done.append(s)
                else:
                    self._to_decode(s)
        self.stats.finished += len(done)
        if self.prefilling or self._decoders or self.waiting:
            self._start(now)
        return done

    # -- internals --------------------------------------------------------------------------

    def _to_decode(self, s: Seq) -> None:
        s.state = _DECODE
        s.base = s.prompt
        s.t0 = self._k
        self._decoders[s.order] = s
        self._kv_sum += s.base - s.t0
        heapq.heappush(self._heap, (self._k + (s.out - s.gen), s.order, s.preempted, s))

    def _preempt_newest(self) -> bool:
        """Free the most recently admitted sequence's blocks; it recomputes later."""
        victim: Seq | None = None
        if self.prefilling:
            victim = max(self.prefilling, key=lambda s: s.order)
        if self._decoders:
            newest = next(reversed(self._decoders.values()))
            if victim is None or newest.order > victim.order:
                victim = newest
        if victim is None:
            return False
        if victim.state == _DECODE:
            del self._decoders[victim.order]
            self._kv_sum -= victim.base - victim.t0
            victim.gen += self._k - victim.t0
        else:
            self.prefilling.remove(victim)
        # Recompute: the prompt plus everything generated so far is prefilled again.
        victim.prompt = victim.prompt0 + victim.gen
        victim.filled = 0
        victim.state = _WAITING
        victim.preempted += 1
        self.stats.preemptions += 1
        self.waiting.appendleft(victim)
        return True

    def _start(self, now: float) -> None:
        p = self.p
        bs = p.block_size
        # Room for this step's new tokens: one per decoder; preempt until it fits.
        while (
            self._decoders
            and self.used_blocks() + (len(self._decoders) + bs - 1) // bs > self.capacity_blocks
        ):
            self._preempt_newest()
        n_dec = len(self._decoders)
        budget = p.max_batched_tokens - n_dec
        chunks: list[tuple[Seq, int]] = []
        free_blocks = self.capacity_blocks - self.used_blocks() - (n_dec + bs - 1) // bs
        for s in self.prefilling:
            if budget <= 0:
                break
            c = min(s.prompt - s.filled, budget, max(0, free_blocks) * bs)
            if c <= 0:
                break
            chunks.append((s, c))
            budget -= c
            free_blocks -= (c + bs - 1) // bs
        while self.waiting and budget > 0 and self.running < p.max_num_seqs:
            s = self.waiting[0]
            c = min(s.prompt, budget, max(0, free_blocks) * bs)
            if c <= 0:
                break
            self.waiting.popleft()
            s.state = _PREFILL
            self.prefilling.append(s)
            self.stats.tokens_in += s.prompt
            chunks.append((s, c))
            budget -= c
            free_blocks -= (c + bs - 1) // bs
        if not chunks and not n_dec:
            return  # nothing fits (the head waits for blocks that never come back: none busy)
        kv_read = self._kv_sum + n_dec * self._k
        seqs = n_dec + sum(1 for s, c in chunks if s.filled + c >= s.prompt)
        tokens = n_dec + sum(c for _, c in chunks)
        dt = self.model.step_s(tokens, seqs, kv_read, [(c, s.filled) for s, c in chunks])
        self.stats.steps += 1
        self.stats.busy_s += dt
        self.stats.max_running = max(self.stats.max_running, self.running)
        self._step = (now + dt, chunks, n_dec)
