"""JS-n: Jensen-Shannon divergence between character n-gram distributions (docs/design.md §3.3, §7).

As in the WGAN-GP language benchmark (Gulrajani et al. 2017): count the character n-grams of
every string (the ``L - n + 1`` windows inside each string; none across strings), normalise the
counts of the generated strings to ``p`` and of the real strings to ``q``, and report

    JS(p, q) = ( KL(p || m) + KL(q || m) ) / 2 / ln 2,    m = (p + q) / 2,

in bits: 0 for identical distributions, 1 for distributions with disjoint supports.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Mapping, Sequence

NS = (4, 6)


def ngram_counts(strings: Iterable[str], n: int) -> Counter:
    """Counts of the character n-grams inside each string (windows never cross strings)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    counts: Counter = Counter()
    for s in strings:
        if not isinstance(s, str):
            raise TypeError(f"strings: expected str items, got {type(s).__name__}")
        counts.update(s[i:i + n] for i in range(len(s) - n + 1))
    return counts


def js_divergence(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Jensen-Shannon divergence in bits between two count (or probability) tables.

    Each table is normalised by its own total first; raises ``ValueError`` on an empty one.
    """
    tp, tq = float(sum(p.values())), float(sum(q.values()))
    for name, t in (("p", tp), ("q", tq)):
        if not t > 0:
            raise ValueError(f"{name}: no n-grams to compare (empty or all-zero counts); strings shorter "
                             "than n give none")
    if any(v < 0 for v in p.values()) or any(v < 0 for v in q.values()):
        raise ValueError("p, q: counts must be non-negative")
    total = 0.0
    for key in set(p) | set(q):
        a, b = p.get(key, 0) / tp, q.get(key, 0) / tq
        m = 0.5 * (a + b)
        if a > 0:
            total += a * math.log(a / m)
        if b > 0:
            total += b * math.log(b / m)
    return max(0.0, 0.5 * total / math.log(2.0))


def js_ngram(generated: Sequence[str], real: Sequence[str] | Mapping[str, float], n: int) -> float:
    """JS-n (bits) between the n-gram distributions of ``generated`` and ``real`` strings.

    ``real`` may also be a precomputed :func:`ngram_counts` table (for many comparisons against
    one reference).
    """
    ref = real if isinstance(real, Mapping) else ngram_counts(real, n)
    return js_divergence(ngram_counts(generated, n), ref)


class NgramReference:
    """Held-out real strings with their n-gram tables counted once; ``ref(strings)`` scores a set."""

    def __init__(self, real: Sequence[str], ns: Sequence[int] = NS):
        self.ns = tuple(ns)
        self.n_strings = len(real)
        self.tables = {n: ngram_counts(real, n) for n in self.ns}

    def __call__(self, generated: Sequence[str]) -> dict[str, float]:
        """``{"js4": ..., "js6": ...}`` (one key per n)."""
        return {f"js{n}": js_divergence(ngram_counts(generated, n), self.tables[n]) for n in self.ns}


def js_scores(generated: Sequence[str], real: Sequence[str], ns: Sequence[int] = NS) -> dict[str, float]:
    """``{"js4": JS-4, "js6": JS-6}`` (or one key per ``ns``) of ``generated`` against ``real``."""
    return NgramReference(real, ns)(generated)
