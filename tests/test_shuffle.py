"""The packed-sort permutation: a permutation, uniform, with jax.random.permutation's rounds rule."""
import itertools
import math

import jax
import numpy as np
import pytest
from scipy import stats

from aejax.training.shuffle import MAX_PACKED, permutation, rounds_for


@pytest.mark.parametrize("n", [1, 2, 7, 1437, 60000, MAX_PACKED + 1])
def test_is_a_permutation_of_range(n):
    perm = np.asarray(jax.jit(permutation, static_argnums=1)(jax.random.key(n), n))
    assert perm.dtype == np.int32
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))


def test_rounds_follow_jax_rule():
    # jax.random.permutation: ceil(3 ln n / ln(2**32 - 1)) rounds of 32-bit keys
    for n in (2, 1437, 60000, 10**6):
        assert rounds_for(n, 32) == math.ceil(3 * math.log(n) / math.log(np.iinfo(np.uint32).max))
    assert rounds_for(60000, 16) == 3  # 16 position bits leave 16 random bits
    assert rounds_for(MAX_PACKED, 12) == 5


def test_every_order_of_five_equally_likely():
    keys = jax.random.split(jax.random.key(0), 24000)
    perms = np.asarray(jax.jit(jax.vmap(lambda k: permutation(k, 5)))(keys))
    index = {p: i for i, p in enumerate(itertools.permutations(range(5)))}
    counts = np.bincount([index[tuple(p)] for p in perms], minlength=120)
    assert counts.min() > 0
    assert stats.chisquare(counts).pvalue > 1e-3


def test_no_order_left_from_ties_with_few_random_bits():
    # 2**20 positions leave 12 random bits: one round puts ~256 examples in each bucket in
    # position order (almost every neighbour an ascent); the rounds must wash that out
    n = MAX_PACKED
    perms = np.asarray(jax.jit(jax.vmap(lambda k: permutation(k, n)))(jax.random.split(jax.random.key(1), 2)))
    for perm in perms:
        ascents = int(np.sum(np.diff(perm) > 0))
        z = (ascents - (n - 1) / 2) / math.sqrt((n + 1) / 12)  # Eulerian mean and variance
        assert abs(z) < 5
        # where the first 1000 examples land: uniform over the positions
        assert stats.kstest(np.argsort(perm)[:1000] / n, "uniform").pvalue > 1e-4


def test_different_keys_give_different_orders():
    a = np.asarray(permutation(jax.random.key(0), 1000))
    b = np.asarray(permutation(jax.random.key(1), 1000))
    assert (a != b).mean() > 0.9
