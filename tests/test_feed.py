"""The two feeds: streamed batches are the in-memory batches, in the same order, with the same result."""
import json
import re

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


@pytest.fixture
def dump_ir(tmp_path):
    """``dump(name)``: from here on JAX writes every module it compiles to ``tmp_path/ir/name``
    (its ``jax_dump_ir_to`` option); the option is restored afterwards."""
    before = jax.config.read("jax_dump_ir_to")

    def dump(name: str):
        folder = tmp_path / "ir" / name
        jax.config.update("jax_dump_ir_to", str(folder))
        return folder

    yield dump
    jax.config.update("jax_dump_ir_to", before)


def _training_chunks(folder) -> dict[int, str]:
    """The StableHLO of the compiled training chunks in a dump folder, by chunk length: the
    ``jit_chunk`` modules that take ``[k, 128, 8, 8, 1]`` batches of digits."""
    chunks = {}
    for path in sorted(folder.glob("*jit_chunk*.mlir")):
        text = path.read_text()
        lengths = {int(k) for k in re.findall(r"tensor<(\d+)x128x8x8x1xf32>", text)} - {0, 1}
        if lengths:
            (k,) = lengths
            chunks[k] = text
    return chunks


def _loops_over_batches(module: str) -> bool:
    """Whether a module holds a while loop that carries the batches (a scan over the steps)."""
    return any("stablehlo.while" in line and "x128x8x8x1xf32" in line for line in module.splitlines())


def test_unrolled_chunks_give_the_looped_numbers(tmp_path, dump_ir):
    args = ("encoder=conv", "decoder=conv", "trainer.epochs=2", "trainer.feed=stream", "logger.mode=disabled",
            "trainer.progress=off", "trainer.unroll_steps=5", "trainer.stream_chunk=5")
    ir = {}
    for name in ("loop", "unrolled"):
        ir[name] = dump_ir(name)
        run(compose_config(*args, f"trainer.unroll={'on' if name == 'unrolled' else 'off'}"), tmp_path / name)
    jax.config.update("jax_dump_ir_to", "")
    summaries = {f: json.loads((tmp_path / f / "summary.json").read_text()) for f in ("loop", "unrolled")}
    assert (summaries["loop"]["feed"], summaries["unrolled"]["feed"]) == ("stream", "stream (unrolled)")
    # what was compiled: chunks of 5 and 2 steps (12 steps an epoch), a while loop only when not unrolled
    looped, unrolled = _training_chunks(ir["loop"]), _training_chunks(ir["unrolled"])
    assert sorted(looped) == sorted(unrolled) == [2, 5]
    assert all(_loops_over_batches(m) for m in looped.values())
    assert not any(_loops_over_batches(m) for m in unrolled.values())
    rows = {f: [json.loads(x) for x in (tmp_path / f / "metrics.jsonl").read_text().splitlines()] for f in ("loop", "unrolled")}
    assert [r["step"] for r in rows["loop"]] == [r["step"] for r in rows["unrolled"]] == [0, 12, 24]
    for a, b in zip(rows["loop"], rows["unrolled"], strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-4), k
