"""A row says in how many segments (processes) its run trained, and how long each one trained."""

from __future__ import annotations

import pytest

from helpers import TWO_STAGES, _Killed, _killed_after, _run


@pytest.fixture(scope="module")
def synthetic():
    from fer_bench.data import load_dataset

    return load_dataset("synthetic")


def test_a_run_killed_and_resumed_twice_has_three_segments(tmp_path, synthetic, monkeypatch):
    full = _run(tmp_path / "full", synthetic, TWO_STAGES)
    assert full["segments"] == 1 and full["segment_train_s"] == [full["train_wall_s"]]
    out = tmp_path / "killed"
    for kill_after, resume in ((1, False), (2, True)):
        with monkeypatch.context() as m:
            _killed_after(m, kill_after)
            with pytest.raises(_Killed):
                _run(out, synthetic, TWO_STAGES, resume=resume)
    row = _run(out, synthetic, TWO_STAGES, resume=True)
    walls = [h["epoch_wall_s"] for h in row["history"]]
    assert row["segments"] == 3  # epoch 1, epoch 2, epoch 3: one process each
    assert row["segment_train_s"] == pytest.approx(walls, abs=0.051)
    again = _run(out, synthetic, TWO_STAGES, resume=True)  # nothing left to train: no new segment
    assert again["segments"] == 3 and again["segment_train_s"] == row["segment_train_s"]


def test_a_kill_after_the_first_epoch_gives_two_segments(tmp_path, synthetic, monkeypatch):
    with monkeypatch.context() as m:
        _killed_after(m, 1)
        with pytest.raises(_Killed):
            _run(tmp_path, synthetic, TWO_STAGES)
    row = _run(tmp_path, synthetic, TWO_STAGES, resume=True)
    walls = [h["epoch_wall_s"] for h in row["history"]]
    assert row["segments"] == 2 and row["segment_train_s"] == pytest.approx([walls[0], walls[1] + walls[2]], abs=0.051)
    assert sum(row["segment_train_s"]) == pytest.approx(row["train_wall_s"], abs=0.11)
