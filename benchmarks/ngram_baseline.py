"""A reference floor for the quality numbers: an interpolated modified Kneser-Ney character n-gram.

Trained on the same split as `micrornn train` (the first 1,003,854 characters of the bundled
tinyshakespeare) and scored like `micrornn eval`: the validation part as one stream, each
character predicted from the validation characters before it (no training text as context), in
nats per character. A recurrent model's figure means something only below this floor.

    python benchmarks/ngram_baseline.py              # orders 1..10
    python benchmarks/ngram_baseline.py --orders 7   # one order

The model (Chen & Goodman's interpolated modified Kneser-Ney): for a context h of length k-1,
    P_k(w | h) = (c(hw) - D(c(hw)))+ / c(h.) + gamma(h) P_{k-1}(w | h[1:]),
    gamma(h)   = (D1 N1(h.) + D2 N2(h.) + D3 N3+(h.)) / c(h.),
with raw counts c at the highest order and continuation counts (the number of distinct characters
seen before hw) below it; D1, D2, D3+ per order from the counts of counts; P_0 is uniform over the
vocabulary. A context never seen passes its whole mass to the shorter context.
"""
from __future__ import annotations

import argparse
import math
import time
from collections import Counter, defaultdict

from micrornn.train.data import load_bundled_corpus, split_point


def count_orders(text: str, order: int) -> list[Counter]:
    """counts[k][g]: raw count of every k-gram g (k = 1..order) in text; counts[0] is unused."""
    counts = [Counter()]
    for k in range(1, order + 1):
        counts.append(Counter(text[i:i + k] for i in range(len(text) - k + 1)))
    return counts


def continuation_counts(counts: list[Counter], order: int) -> list[Counter]:
    """Counts used at each order: raw at the highest, N1+(. g) (distinct left neighbours) below."""
    used = [Counter() for _ in range(order + 1)]
    used[order] = counts[order]
    for k in range(1, order):
        cont = Counter()
        for gram in counts[k + 1]:
            cont[gram[1:]] += 1
        used[k] = cont
    return used


def discounts(count_of: Counter) -> tuple[float, float, float]:
    """D1, D2, D3+ from the numbers of n-grams seen once, twice, three and four times."""
    n = Counter(v for v in count_of.values() if v <= 4)
    n1, n2, n3, n4 = (max(n[i], 1) for i in (1, 2, 3, 4))
    y = n1 / (n1 + 2 * n2)
    estimates = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    # kept in [0.1, i]: tiny or repetitive texts give degenerate counts of counts (D <= 0 would leave
    # no mass for unseen characters); the tinyshakespeare estimates lie well inside
    return tuple(min(max(d, 0.1), i) for i, d in enumerate(estimates, start=1))


def context_tables(used: list[Counter], order: int):
    """Per order: each context's total count and its D-weighted number of distinct followers."""
    tables = []
    for k in range(order + 1):
        if k == 0:
            tables.append(None)
            continue
        d = discounts(used[k])
        total, mass = defaultdict(int), defaultdict(float)
        for gram, c in used[k].items():
            h = gram[:-1]
            total[h] += c
            mass[h] += d[min(c, 3) - 1]
        tables.append((d, total, mass))
    return tables


def probability(history: str, w: str, used, tables, order: int, vocab_size: int) -> float:
    """P_KN(w | the last order-1 characters of history), interpolated down to uniform."""
    p = 1.0 / vocab_size
    for k in range(1, order + 1):  # build up from the shortest context
        if len(history) < k - 1:
            break
        h = history[len(history) - (k - 1):] if k > 1 else ""
        d, total, mass = tables[k]
        c_h = total.get(h, 0)
        if c_h == 0:
            continue  # an unseen context keeps the lower-order estimate whole
        c = used[k].get(h + w, 0)
        p = (max(c - d[min(c, 3) - 1], 0.0) if c else 0.0) / c_h + mass[h] / c_h * p
    return p


def nats_per_char(train: str, val: str, order: int, vocab_size: int) -> float:
    """Mean -log P of val[1:] given the validation characters before each."""
    used = continuation_counts(count_orders(train, order), order)
    tables = context_tables(used, order)
    total = 0.0
    for i in range(1, len(val)):
        total -= math.log(probability(val[max(0, i - order + 1):i], val[i], used, tables, order, vocab_size))
    return total / (len(val) - 1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Kneser-Ney character n-gram floor on the tinyshakespeare split.")
    parser.add_argument("--orders", type=int, nargs="+", default=list(range(1, 11)),
                        help="n-gram orders to score (default 1..10)")
    args = parser.parse_args(argv)
    text = load_bundled_corpus()
    cut = split_point(len(text))
    train, val = text[:cut], text[cut:]
    vocab_size = len(set(text))
    print(f"train {len(train):,} chars, validation {len(val):,} chars, vocabulary {vocab_size}")
    print("order  nats/char  seconds")
    for order in args.orders:
        start = time.perf_counter()
        score = nats_per_char(train, val, order, vocab_size)
        print(f"{order:5d}  {score:9.4f}  {time.perf_counter() - start:7.1f}")


if __name__ == "__main__":
    main()
