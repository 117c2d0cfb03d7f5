"""The training split on disk (training/encoded.py) and its batches (training/batches.py): what is
written is what is read, a kill leaves no half split, a spread split's every window samples all of it, and
each epoch's order depends only on (seed, epoch)."""

from __future__ import annotations

import math
import signal
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pytest

from trainer.faults import KILL_AT_VARIABLE
from trainer.training.arrays import predict
from trainer.training.batches import StreamedBatches
from trainer.training.encoded import (
    EncodedSplit,
    EncodedSplitWriter,
    predict_split,
    spread_blocks,
    spread_for_shuffling,
)

ROWS, BLOCK_ROWS, WINDOW_ROWS, BATCH = 10_000, 1_000, 3_000, 512


def arrays(rows: int, offset: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Inputs whose values name their row: `row` and `tokens` (the row 3 times), labels the row as float."""
    row = np.arange(offset, offset + rows, dtype=np.int32)
    return {"row": row, "tokens": np.stack([row] * 3, axis=1)}, row.astype(np.float32).reshape(-1, 1)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> EncodedSplit:
    """ROWS rows, added in uneven parts, in blocks of BLOCK_ROWS."""
    writer = EncodedSplitWriter(tmp_path_factory.mktemp("encoded") / "train", BLOCK_ROWS)
    for start in range(0, ROWS, 777):
        writer.add(*arrays(min(777, ROWS - start), start))
    return writer.close()


def epoch_rows(batches: StreamedBatches, epoch: int) -> list[np.ndarray]:
    """Each batch's row numbers in epoch `epoch`, checking that inputs and labels stayed together."""
    batches.on_epoch_begin(epoch)
    rows = []
    for inputs, labels in batches.dataset:
        row = inputs["row"].numpy()
        assert (inputs["tokens"].numpy() == row[:, None]).all() and (labels.numpy()[:, 0] == row).all()
        rows.append(row)
    return rows


def test_a_split_reads_back_as_written_in_blocks(split: EncodedSplit) -> None:
    assert EncodedSplit.open(split.folder) == split
    blocks = list(split.blocks())
    assert [len(labels) for _, labels in blocks] == [BLOCK_ROWS] * 10
    inputs, labels = arrays(ROWS)
    for name, values in inputs.items():
        np.testing.assert_array_equal(np.concatenate([block[name] for block, _ in blocks]), values)
    np.testing.assert_array_equal(np.concatenate([block_labels for _, block_labels in blocks]), labels)


def test_a_kill_while_writing_leaves_the_earlier_split_whole(tmp_path: Path, run_python: Callable) -> None:
    folder = tmp_path / "validation"
    writer = EncodedSplitWriter(folder, 64)
    writer.add(*arrays(100))
    writer.close()
    rewrite = (f"from trainer.training.encoded import EncodedSplitWriter\nimport numpy as np\n"
               f"writer = EncodedSplitWriter({str(folder)!r}, 64)\n"
               f"writer.add({{'row': np.zeros(300, np.int32)}}, np.zeros((300, 1), np.float32))\nwriter.close()\n")
    killed = run_python("-c", rewrite, env={KILL_AT_VARIABLE: "encoded:validation"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    earlier = EncodedSplit.open(folder)  # not the killed writer's rows: the whole earlier split
    assert earlier.rows == 100 and set(earlier.specs) == {"row", "tokens"}
    np.testing.assert_array_equal(np.concatenate([block["row"] for block, _ in earlier.blocks()]), np.arange(100))

    writer = EncodedSplitWriter(folder, 64)  # the rerun writes it again, whole
    writer.add(*arrays(300, offset=5))
    assert writer.close().rows == EncodedSplit.open(folder).rows == 300
    assert sorted(path.name for path in tmp_path.iterdir()) == ["validation"]  # no partial folder left


@pytest.mark.parametrize("window_rows", [WINDOW_ROWS, 1_048_576], ids=["windows", "one window, kept in memory"])
def test_each_epochs_batches_depend_only_on_seed_and_epoch(split: EncodedSplit, window_rows: int) -> None:
    batches = StreamedBatches(split, BATCH, seed=7, shuffle_rows=window_rows)
    epochs = [epoch_rows(batches, epoch) for epoch in range(3)]
    resumed = epoch_rows(StreamedBatches(split, BATCH, seed=7, shuffle_rows=window_rows), 2)  # epochs 0, 1 not run
    assert all(np.array_equal(a, b) for a, b in zip(resumed, epochs[2], strict=True))
    assert not np.array_equal(epochs[0][0], epochs[1][0])
    for rows in epochs:  # every row once, in ceil(rows / batch) batches, only the last one smaller
        assert batches.steps == len(rows) == math.ceil(ROWS / BATCH)
        assert [len(batch) for batch in rows] == [BATCH] * (len(rows) - 1) + [ROWS % BATCH]
        assert sorted(np.concatenate(rows).tolist()) == list(range(ROWS))
    other_seed = epoch_rows(StreamedBatches(split, BATCH, seed=8, shuffle_rows=window_rows), 2)
    assert not np.array_equal(other_seed[0], epochs[2][0])


def test_the_shuffle_window_bounds_what_is_mixed_and_a_small_split_is_mixed_whole(split: EncodedSplit) -> None:
    first_batch = epoch_rows(StreamedBatches(split, BATCH, seed=7, shuffle_rows=WINDOW_ROWS), 0)[0]
    assert len(np.unique(first_batch // BLOCK_ROWS)) == WINDOW_ROWS // BLOCK_ROWS  # one window's 3 blocks
    whole = epoch_rows(StreamedBatches(split, BATCH, seed=7, shuffle_rows=1_048_576), 0)[0]
    assert len(np.unique(whole // BLOCK_ROWS)) == ROWS // BLOCK_ROWS  # one window: every block


def test_a_spread_split_holds_every_row_once_and_each_block_samples_the_whole_split(
        split: EncodedSplit, tmp_path: Path) -> None:
    spread = spread_blocks(split, tmp_path / "spread", group_blocks=3)
    assert (spread.rows, spread.block_rows, spread.specs) == (split.rows, split.block_rows, split.specs)
    blocks = [block["row"] for block, _ in spread.blocks()]
    assert [len(rows) for rows in blocks] == [BLOCK_ROWS] * 10
    assert sorted(np.concatenate(blocks).tolist()) == list(range(ROWS))
    for rows in blocks:  # a tenth of each block written: rows from the whole split, evenly
        assert np.bincount(rows // BLOCK_ROWS, minlength=10).tolist() == [BLOCK_ROWS // 10] * 10
    for block, labels in spread.blocks():  # rows kept whole
        assert (block["tokens"] == block["row"][:, None]).all() and (labels[:, 0] == block["row"]).all()
    in_one_group = spread_blocks(split, tmp_path / "one group", group_blocks=10)  # memory does not change it
    assert all(np.array_equal(a["row"], b["row"]) for (a, _), (b, _) in zip(in_one_group.blocks(), spread.blocks()))

    writer = EncodedSplitWriter(tmp_path / "uneven", BLOCK_ROWS)  # a last block half full
    writer.add(*arrays(2_500))
    uneven = spread_blocks(writer.close(), tmp_path / "uneven spread", group_blocks=2)
    blocks = [block["row"] for block, _ in uneven.blocks()]
    assert [len(rows) for rows in blocks] == [1_000, 1_000, 500]
    assert sorted(np.concatenate(blocks).tolist()) == list(range(2_500))
    first_slices = np.concatenate(blocks)[:832]  # slice 0 of each block written, the last block's half as large
    assert np.bincount(first_slices // BLOCK_ROWS).tolist() == [333, 333, 166]


def test_a_window_of_a_split_in_file_order_mixes_rows_from_all_of_it(tmp_path: Path) -> None:
    """A file in time order: once spread for shuffling, the first batch of an epoch holds rows from every
    stretch of the file, not from one window's few blocks."""
    writer = EncodedSplitWriter(tmp_path / "train.in-file-order", BLOCK_ROWS)
    writer.add(*arrays(ROWS))
    ready = spread_for_shuffling(writer.close(), tmp_path / "train", shuffle_rows=WINDOW_ROWS)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["train"]  # the file-order copy is gone
    first_batch = epoch_rows(StreamedBatches(ready, BATCH, seed=7, shuffle_rows=WINDOW_ROWS), 0)[0]
    assert len(np.unique(first_batch // BLOCK_ROWS)) == ROWS // BLOCK_ROWS  # every written block, not 3
    small = EncodedSplitWriter(tmp_path / ".small", BLOCK_ROWS)
    small.add(*arrays(WINDOW_ROWS))
    kept = spread_for_shuffling(small.close(), tmp_path / "small", shuffle_rows=WINDOW_ROWS)  # one window
    np.testing.assert_array_equal(np.concatenate([block["row"] for block, _ in kept.blocks()]), np.arange(WINDOW_ROWS))


def test_predict_split_scores_block_by_block_as_the_whole_arrays(split: EncodedSplit) -> None:
    inputs = {name: keras.Input(spec.shape, name=name, dtype=spec.dtype) for name, spec in split.specs.items()}
    merged = keras.layers.Concatenate()([keras.ops.expand_dims(inputs["row"], 1), inputs["tokens"]])
    score = keras.layers.Dense(1, activation="sigmoid")(keras.ops.cast(merged, "float32") / ROWS)
    model = keras.Model(inputs, score)
    scores, labels = predict_split(model, split)
    whole, whole_labels = arrays(ROWS)
    np.testing.assert_array_equal(labels, whole_labels)
    np.testing.assert_allclose(scores, predict(model, whole), atol=1e-7)
