"""Cache keys: what a state's result depends on, so that an unchanged state is restored,
not recomputed (DESIGN §3 "Cache", §4 "Cache keys")."""

from nbflow.cache.analysis import CodeFacts, code_facts
from nbflow.cache.keys import KEY_VERSION, make_key
from nbflow.cache.values import KeyParts, Uncacheable, distribution_version

__all__ = [
    "KEY_VERSION",
    "CodeFacts",
    "KeyParts",
    "Uncacheable",
    "code_facts",
    "distribution_version",
    "make_key",
]
