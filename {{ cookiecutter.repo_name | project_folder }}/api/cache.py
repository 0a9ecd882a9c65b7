"""A cache of finished answers, bounded in bytes.

Used for ``/calculate`` answers (``api/engine.py``), model metadata
(``api/metadata.py``) and local job results (``api/jobs.py``). Each holds
encoded JSON: the bound is then exact, and evicting an entry frees it,
since bytes hold no references to anything else.
"""

from collections import OrderedDict


class BytesCache:
    """Values (bytes) by key, least recently used out first, at most
    ``max_bytes`` in all. A value over the whole bound is not kept."""

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
        if len(value) > self.max_bytes:
            return False
        if key in self._values:
            return True
        self._values[key] = value
        self.size += len(value)
        while self.size > self.max_bytes:
            _, evicted = self._values.popitem(last=False)
            self.size -= len(evicted)
        return True

    def clear(self) -> None:
        self._values.clear()
        self.size = 0

    def __len__(self) -> int:
        return len(self._values)
