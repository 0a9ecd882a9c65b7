"""The byte-bounded cache behind answers, metadata and local jobs."""

from policyengine_backend._cache import ENTRY_OVERHEAD, BytesCache


def test_the_bound_counts_keys_and_overhead_not_just_values():
    # Small values (a parameter's answer is a few hundred bytes) cost
    # mostly their key and the entry itself.
    cache = BytesCache(max_bytes=10 * (ENTRY_OVERHEAD + 20))

    for i in range(100):
        cache.put(f"key-{i:04d}", b"x" * 12)

    assert len(cache) == 10
    assert cache.size <= cache.max_bytes
    assert cache.get("key-0000") is None  # the oldest went first
    assert cache.get("key-0099") == b"x" * 12


def test_least_recently_used_goes_first():
    cache = BytesCache(max_bytes=3 * (ENTRY_OVERHEAD + 10))
    for key in ("a", "b", "c"):
        cache.put(key, b"123456789")

    cache.get("a")
    cache.put("d", b"123456789")

    assert cache.get("b") is None
    assert cache.get("a") == cache.get("d") == b"123456789"


def test_a_value_over_the_whole_bound_is_refused_and_nothing_evicted():
    cache = BytesCache(max_bytes=ENTRY_OVERHEAD + 100)
    cache.put("small", b"1")

    assert cache.put("big", b"x" * 200) is False
    assert cache.get("small") == b"1" and cache.get("big") is None


def test_clear_returns_everything():
    cache = BytesCache(max_bytes=10_000)
    cache.put("a", b"1")

    cache.clear()

    assert len(cache) == 0 and cache.size == 0
