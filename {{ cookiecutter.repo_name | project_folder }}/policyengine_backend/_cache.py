"""A cache of finished answers, bounded in bytes.

Used for ``/calculate`` answers (``policyengine_backend/_engine/engine.py``), model metadata
(``policyengine_backend/_model/metadata.py``) and local job results (``policyengine_backend/_jobs/local.py``). Each holds
encoded JSON: the bound is then exact, and evicting an entry frees it,
since bytes hold no references to anything else.

The eviction is cachetools' ``LRUCache`` sized by ``getsizeof``; this
module only decides what an entry costs.
"""

from cachetools import LRUCache

# What an entry costs besides its key's and value's characters: the two
# objects' headers, the tuple holding them and the cache's table slots
# (240-330 bytes measured per entry, depending on how full the tables
# are; small answers are mostly this).
ENTRY_OVERHEAD = 256


def cost(key: str, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD


def entry_cost(entry: tuple[str, bytes]) -> int:
    return cost(*entry)


class BytesCache:
    """Values (bytes) by key, least recently used out first, at most
    ``max_bytes`` in all, keys and per-entry overhead included. A value
    over the whole bound is not kept."""

    def __init__(self, max_bytes: int):
        # The key is stored beside its value because LRUCache sizes an
        # entry by its value alone, and a /calculate key is the whole
        # request: it can be larger than the answer.
        self._entries: LRUCache[str, tuple[str, bytes]] = LRUCache(
            max_bytes, getsizeof=entry_cost
        )

    @property
    def max_bytes(self) -> int:
        return int(self._entries.maxsize)

    @property
    def size(self) -> int:
        return int(self._entries.currsize)

    def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        return None if entry is None else entry[1]

    def put(self, key: str, value: bytes) -> bool:
        """Keep ``value``; False if it is over the whole bound."""
        # Checked here rather than by catching LRUCache's ValueError, which
        # would hide any other ValueError; nothing is evicted for it.
        if cost(key, value) > self.max_bytes:
            return False
        self._entries[key] = (key, value)
        return True

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
