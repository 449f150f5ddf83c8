"""The two feeds: streamed batches are the in-memory batches, in the same order, with the same result."""
import json

import jax
import numpy as np
import pytest
from conftest import compose_config

from aejax.data import load_dataset
from aejax.experiment import run
from aejax.training.epoch import epoch_batches
from aejax.training.feed import StreamFeed, choose_feed


@pytest.fixture(scope="module")
def digits():
    return load_dataset(compose_config("logger.mode=disabled").dataset)


def test_streamed_chunks_are_the_in_memory_batches_in_order(digits):
    key = jax.random.fold_in(jax.random.key(7), 3)
    idx, w = (np.asarray(a) for a in epoch_batches(key, digits.num_train, 128, False))
    chunks = list(StreamFeed(digits.x_train, chunk=5, workers=3, prefetch=2).epoch(idx, w))
    assert [len(x) for x, _ in chunks] == [5, 5, 2]  # 12 steps per epoch
    xs = np.concatenate([x for x, _ in chunks])
    ws = np.concatenate([w for _, w in chunks])
    np.testing.assert_array_equal(xs, digits.x_train[idx])  # what the in-memory scan gathers on device
    np.testing.assert_array_equal(ws, w)


def test_each_process_reads_its_own_columns_of_the_global_batch(digits):
    idx, w = (np.asarray(a) for a in epoch_batches(jax.random.key(0), digits.num_train, 128, False))
    parts = []
    for process in range(2):
        feed = StreamFeed(digits.x_train, chunk=12, workers=1, prefetch=1)
        feed.process, feed.processes = process, 2
        ((x, _),) = list(feed.epoch(idx, w))
        parts.append(x)
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), digits.x_train[idx])


def test_streaming_and_in_memory_training_give_the_same_numbers(tmp_path):
    args = ("trainer.epochs=3", "logger.mode=disabled", "trainer.progress=off", "seed=3")
    run(compose_config(*args, "trainer.feed=memory"), tmp_path / "memory")
    run(compose_config(*args, "trainer.feed=stream", "trainer.stream_chunk=5"), tmp_path / "stream")
    rows = {f: [json.loads(x) for x in (tmp_path / f / "metrics.jsonl").read_text().splitlines()] for f in ("memory", "stream")}
    assert rows["memory"] == rows["stream"]
    summaries = {f: json.loads((tmp_path / f / "summary.json").read_text()) for f in ("memory", "stream")}
    assert (summaries["memory"]["feed"], summaries["stream"]["feed"]) == ("memory", "stream")


def test_auto_streams_only_what_does_not_fit(digits):
    assert digits.train_bytes == 1437 * 64 * 4
    assert choose_feed("auto", digits, budget=10**6) == "memory"
    assert choose_feed("auto", digits, budget=10**5) == "stream"
    assert choose_feed("stream", digits, budget=10**9) == "stream"


def test_conv_nets_on_cpu_stream_unrolled_chunks(digits):
    from aejax.training.feed import plan_feed

    trainer = compose_config("logger.mode=disabled").trainer
    assert plan_feed(trainer, digits, has_conv=True, backend="cpu") == ("stream", True)
    assert plan_feed(trainer, digits, has_conv=True, backend="gpu") == ("memory", False)
    assert plan_feed(trainer, digits, has_conv=False, backend="cpu") == ("memory", False)
    forced = compose_config("logger.mode=disabled", "trainer.feed=memory").trainer
    assert plan_feed(forced, digits, has_conv=True, backend="cpu") == ("memory", False)  # an explicit feed wins


def test_unrolled_chunks_give_the_looped_numbers(tmp_path):
    args = ("encoder=conv", "decoder=conv", "trainer.epochs=2", "trainer.feed=stream", "logger.mode=disabled",
            "trainer.progress=off", "trainer.unroll_steps=5", "trainer.stream_chunk=5")
    run(compose_config(*args, "trainer.unroll=off"), tmp_path / "loop")
    run(compose_config(*args, "trainer.unroll=on"), tmp_path / "unrolled")
    rows = {f: [json.loads(x) for x in (tmp_path / f / "metrics.jsonl").read_text().splitlines()] for f in ("loop", "unrolled")}
    for a, b in zip(rows["loop"], rows["unrolled"]):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-4), k
