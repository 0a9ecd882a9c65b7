"""A cache of finished answers, bounded in bytes.

Used for ``/calculate`` answers (``policyengine_backend/engine.py``), model metadata
(``policyengine_backend/metadata.py``) and local job results (``policyengine_backend/jobs.py``). Each holds
encoded JSON: the bound is then exact, and evicting an entry frees it,
since bytes hold no references to anything else.
"""

from collections import OrderedDict

# What an entry costs besides its key's and value's characters: the two
# objects' headers and the dict's slot for them (about 300 bytes measured
# per entry of /parameters answers; small answers are mostly this).
ENTRY_OVERHEAD = 256


def cost(key: str, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD


class BytesCache:
    """Values (bytes) by key, least recently used out first, at most
    ``max_bytes`` in all, keys and per-entry overhead included. A value
    over the whole bound is not kept."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.size = 0
        self._values: OrderedDict[str, bytes] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        value = self._values.get(key)
        if value is not None:
            self._values.move_to_end(key)
        return value

    def put(self, key: str, value: bytes) -> bool:
        """Keep ``value``; False if it is over the whole bound."""
        if cost(key, value) > self.max_bytes:
            return False
        if key in self._values:
            return True
        self._values[key] = value
        self.size += cost(key, value)
        while self.size > self.max_bytes:
            evicted_key, evicted = self._values.popitem(last=False)
            self.size -= cost(evicted_key, evicted)
        return True

    def clear(self) -> None:
        self._values.clear()
        self.size = 0

    def __len__(self) -> int:
        return len(self._values)
