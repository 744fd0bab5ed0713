"""A paged KV cache with automatic prefix caching, as vLLM's block pool keeps it (pure).

`num_blocks` blocks of `block_size` tokens. A block is referenced by the sequences using it. A
full block gets a hash chained from the one before it, so equal token prefixes share blocks.
When its last reference goes, a hashed block stays cached but evictable (least recently freed
first); an unhashed one is plainly free. Usage, as vLLM reports it, counts only referenced
blocks: cached-but-unreferenced blocks are free space.
"""

from __future__ import annotations

from collections import OrderedDict


def block_hashes(token_ids: list[int], block_size: int, limit: int | None = None) -> list[int]:
    """The chained hash of every full block of `token_ids` (the first `limit` blocks)."""
    return extend_hashes([], token_ids, block_size, limit)


def extend_hashes(hashes: list[int], token_ids: list[int], block_size: int,
                  limit: int | None = None) -> list[int]:
    """`hashes` (those of the first blocks) extended in place to the first `limit` full blocks:
    each block is hashed once in a sequence's life, not again whenever a block fills."""
    full = len(token_ids) // block_size
    parent = hashes[-1] if hashes else 0
    for i in range(len(hashes), full if limit is None else min(full, limit)):
        parent = hash((parent, tuple(token_ids[i * block_size:(i + 1) * block_size])))
        hashes.append(parent)
    return hashes


class KvCache:
    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool = True):
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.prefix_caching = prefix_caching
        self._free: list[int] = list(range(num_blocks - 1, -1, -1))  # pop() takes block 0 first
        self._refs = [0] * num_blocks
        self._hash_of: dict[int, int] = {}           # block -> its hash (full blocks only)
        self._block_of: dict[int, int] = {}          # hash -> cached block
        self._evictable: OrderedDict[int, None] = OrderedDict()  # unreferenced cached blocks

    # -- queries ---------------------------------------------------------------------------

    @property
    def free_blocks(self) -> int:
        return len(self._free) + len(self._evictable)

    @property
    def usage(self) -> float:
        return 1.0 - self.free_blocks / self.num_blocks

    def cached_prefix(self, hashes: list[int]) -> list[int]:
        """The cached blocks holding the longest prefix of `hashes`."""
        blocks = []
        if self.prefix_caching:
            for h in hashes:
                block = self._block_of.get(h)
                if block is None:
                    break
                blocks.append(block)
        return blocks

    # -- changes ---------------------------------------------------------------------------

    def take(self, blocks: list[int]) -> None:
        """Reference cached blocks found by `cached_prefix`."""
        for block in blocks:
            if self._refs[block] == 0:
                self._evictable.pop(block, None)
            self._refs[block] += 1

    def allocate(self, n: int) -> list[int] | None:
        """`n` fresh blocks (evicting the least recently freed cached ones if needed), or
        None if there are not enough free blocks."""
        if n > self.free_blocks:
            return None
        blocks = []
        for _ in range(n):
            if self._free:
                block = self._free.pop()
            else:
                block, _ = self._evictable.popitem(last=False)
                del self._block_of[self._hash_of.pop(block)]
            self._refs[block] = 1
            blocks.append(block)
        return blocks

    def register(self, block: int, block_hash: int) -> None:
        """A block became full: make it findable by its prefix hash."""
        if self.prefix_caching and block_hash not in self._block_of:
            self._hash_of[block] = block_hash
            self._block_of[block_hash] = block

    def release(self, blocks: list[int]) -> None:
        """Drop one reference from each block (a sequence finished or was preempted)."""
        for block in reversed(blocks):  # tail blocks are evicted before the shared prefix
            self._refs[block] -= 1
            if self._refs[block] == 0:
                if block in self._hash_of:
                    self._evictable[block] = None
                else:
                    self._free.append(block)

    def reset(self) -> None:
        """Forget everything (the engine restarted)."""
        self.__init__(self.num_blocks, self.block_size, self.prefix_caching)
