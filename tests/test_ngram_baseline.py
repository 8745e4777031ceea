"""The Kneser-Ney floor of benchmarks/ngram_baseline.py: a proper distribution, and it learns."""
import importlib.util
import math
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "ngram_baseline.py"
_spec = importlib.util.spec_from_file_location("ngram_baseline", _PATH)
ngram = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ngram)

TEXT = "the cat sat on the mat. the cat ate the rat. a bat sat on a hat. " * 20
VOCAB = sorted(set(TEXT) | set("xyz"))


@pytest.mark.parametrize("order", [1, 2, 4, 6])
@pytest.mark.parametrize("history", ["", "t", "the c", "zzzzzz", "a hat"])
def test_probabilities_sum_to_one_over_the_vocabulary(order, history):
    used = ngram.continuation_counts(ngram.count_orders(TEXT, order), order)
    tables = ngram.context_tables(used, order)
    context = history[max(0, len(history) - order + 1):]
    probs = [ngram.probability(context, w, used, tables, order, len(VOCAB)) for w in VOCAB]
    assert min(probs) > 0
    assert math.isclose(sum(probs), 1.0, rel_tol=0, abs_tol=1e-12)


def test_longer_contexts_predict_repetitive_text_better_and_unseen_text_stays_finite():
    val = "the cat sat on the mat. a bat ate the hat."
    scores = [ngram.nats_per_char(TEXT, val, order, len(VOCAB)) for order in (1, 3, 5)]
    assert scores[0] > scores[1] > scores[2]
    assert math.isfinite(ngram.nats_per_char(TEXT, "xyz zyx", 5, len(VOCAB)))
