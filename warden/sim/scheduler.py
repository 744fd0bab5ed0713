"""One scheduling step, as vLLM's V1 scheduler takes it (pure: queues and cache in, plan out).

Rules, in order:
1. Running sequences go first, oldest first; each computes what it still owes (one token when
   decoding), within the step's token budget. One that needs a new KV block when none is free
   preempts the newest running sequence (itself, if it is the newest): its blocks are freed
   and it goes back to the front of the queue, to recompute everything later.
2. Then, unless something was preempted this step, waiting sequences are admitted in order
   while there are sequence slots, budget and blocks; cached prefix blocks are reused (at least
   one token is always computed). A long prompt is prefilled in chunks across steps.
A sequence samples its next token when all its known tokens are computed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from warden.sim.kv_cache import KvCache, extend_hashes
from warden.sim.tokenizer import output_token_id

WAITING, RUNNING, FINISHED = "waiting", "running", "finished"


class Sequence:
    """One request inside the engine. `on_token(text, finish_reason)` is called per sampled
    token; the last call carries the finish reason."""

    def __init__(self, prompt_ids: list[int], max_tokens: int, natural_length: int, seed: int,
                 on_token, lora: str | None = None):
        self.prompt_ids = prompt_ids
        self.max_tokens = max_tokens
        self.natural_length = natural_length
        self.seed = seed
        self.on_token = on_token
        self.lora = lora
        self.arrival = 0.0
        self.output_ids: list[int] = []
        self.computed = 0
        self.blocks: list[int] = []
        self.hashes: list[int] = []   # chained hashes of its full blocks, computed once each
        self.status = WAITING
        self.preemptions = 0
        self.cached_tokens = 0
        self.first_scheduled_at: float | None = None
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None

    @property
    def known(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    def token_ids(self) -> list[int]:
        return self.prompt_ids + self.output_ids

    def sample(self) -> str | None:
        """Add the next token; return the finish reason if it was the last."""
        self.output_ids.append(output_token_id(self.seed, len(self.output_ids)))
        n = len(self.output_ids)
        if n >= self.max_tokens:
            return "length"
        if n >= self.natural_length:
            return "stop"
        return None


@dataclass
class StepPlan:
    scheduled: list[tuple[Sequence, int]] = field(default_factory=list)
    prefill_tokens: int = 0
    decode_seqs: int = 0
    preempted: list[Sequence] = field(default_factory=list)
    admitted: list[Sequence] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.scheduled)


@dataclass(frozen=True)
class SchedulerLimits:
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192


def schedule(running: list[Sequence], waiting: deque[Sequence], cache: KvCache,
             limits: SchedulerLimits) -> StepPlan:
    """Decide one step, updating the queues and the cache's allocations in place."""
    plan = StepPlan()
    budget = limits.max_num_batched_tokens
    i = 0
    while i < len(running) and budget > 0:
        seq = running[i]
        n = min(seq.known - seq.computed, budget)
        while not _grow(seq, seq.computed + n, cache):
            victim = running.pop()
            _preempt(victim, cache, waiting)
            plan.preempted.append(victim)
            if victim is seq:
                break
        else:
            _plan(plan, seq, n)
            budget -= n
            i += 1
    if plan.preempted:
        return plan
    while waiting and len(running) < limits.max_num_seqs and budget > 0:
        seq = waiting[0]
        _take_cached_prefix(seq, cache)
        n = min(seq.known - seq.computed, budget)
        if not _grow(seq, seq.computed + n, cache):
            # The head of the line waits for blocks (nothing behind it jumps ahead), holding
            # none: as vLLM, which touches the cached prefix only when the allocation
            # succeeds. (Held, a preempted sequence queued before it could leave every
            # block referenced by waiting sequences and none running: a deadlock.)
            _drop_blocks(seq, cache)
            break
        waiting.popleft()
        seq.status = RUNNING
        running.append(seq)
        plan.admitted.append(seq)
        _plan(plan, seq, n)
        budget -= n
    return plan


def complete(plan: StepPlan, cache: KvCache) -> list[tuple[Sequence, str | None]]:
    """Apply a finished step: computed tokens, full blocks registered for prefix caching, and
    one sampled token for every sequence that caught up. Returns (sequence, finish reason)."""
    sampled = []
    for seq, n in plan.scheduled:
        if seq.status != RUNNING:
            continue  # aborted or preempted while the step ran
        before = seq.computed // cache.block_size
        seq.computed += n
        after = seq.computed // cache.block_size
        if after > before:
            hashes = extend_hashes(seq.hashes, seq.token_ids(), cache.block_size, after)
            for index in range(before, after):
                cache.register(seq.blocks[index], hashes[index])
        if seq.computed == seq.known:
            sampled.append((seq, seq.sample()))
    return sampled


def free(seq: Sequence, cache: KvCache) -> None:
    cache.release(seq.blocks)
    seq.blocks = []
    seq.status = FINISHED


def _plan(plan: StepPlan, seq: Sequence, n: int) -> None:
    plan.scheduled.append((seq, n))
    if seq.known - seq.computed == 1 and seq.output_ids:
        plan.decode_seqs += 1
    else:
        plan.prefill_tokens += n


def _grow(seq: Sequence, tokens: int, cache: KvCache) -> bool:
    """Make sure `seq` has blocks for `tokens` tokens."""
    need = -(-tokens // cache.block_size) - len(seq.blocks)
    if need <= 0:
        return True
    blocks = cache.allocate(need)
    if blocks is None:
        return False
    seq.blocks += blocks
    return True


def _take_cached_prefix(seq: Sequence, cache: KvCache) -> None:
    # At least one token must be computed, so the last known token is never taken from cache.
    usable = (seq.known - 1) // cache.block_size
    hashes = extend_hashes(seq.hashes, seq.token_ids(), cache.block_size, usable)
    blocks = cache.cached_prefix(hashes[:usable])
    cache.take(blocks)
    seq.blocks = blocks
    seq.computed = seq.cached_tokens = len(blocks) * cache.block_size


def _drop_blocks(seq: Sequence, cache: KvCache) -> None:
    cache.release(seq.blocks)
    seq.blocks = []
    seq.computed = seq.cached_tokens = 0


def _preempt(seq: Sequence, cache: KvCache, waiting: deque[Sequence]) -> None:
    _drop_blocks(seq, cache)
    seq.status = WAITING
    seq.preemptions += 1
    waiting.appendleft(seq)
