"""Buffer checksums: xxh3_128 of a whole buffer, as snapshot documents record them.

Not cryptographic, and not an id: a snapshot document is signed and names each buffer by
its blake3 id *and* its checksum, so that a restore can check a memory-mapped buffer
several times faster than by its id. Computed in one call (which releases the GIL for its
whole length) or streamed; both give the same value.
"""

from __future__ import annotations

import xxhash

CHECKSUM_ALGORITHM = "xxh3_128"
"""Prefix of a checksum's text."""


def checksum_of(view: memoryview | bytes) -> str:
    """The checksum of all of ``view``, as ``xxh3_128:<hex>``."""
    return f"{CHECKSUM_ALGORITHM}:{xxhash.xxh3_128(view).hexdigest()}"


class ChecksumHasher:
    """The same checksum over bytes fed in pieces."""

    def __init__(self) -> None:
        self._state = xxhash.xxh3_128()

    def update(self, data: bytes | memoryview) -> None:
        """Feed the next bytes."""
        self._state.update(data)

    def text(self) -> str:
        """The checksum of everything fed, as ``xxh3_128:<hex>``."""
        return f"{CHECKSUM_ALGORITHM}:{self._state.hexdigest()}"
