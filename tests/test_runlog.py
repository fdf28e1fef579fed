"""Each run's loss curves as ``losses.csv`` and TensorBoard event files in its folder."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from sslbench.engine.runlog import LOSSES_CSV, TENSORBOARD_DIR, curve_rows, write_run_logs

HISTORY = {
    "loss": [3.0, 2.5, 2.0, 1.5],
    "invariance": [1.0, 0.8, 0.6, 0.5],
    "variance": [0.9, 0.7, 0.5, 0.25],
    "_epoch": [0.5, 1.0, 1.5, 2.0],
}


def test_losses_csv_has_one_row_per_point_and_a_column_per_term(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sslbench.engine.runlog.tensorboard_available", lambda: False)
    written = write_run_logs(tmp_path / "run", HISTORY, "vicreg on digits, seed 0", steps=40)
    assert written == [tmp_path / "run" / LOSSES_CSV]
    with open(written[0], newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["point", "epoch", "step", "loss", "invariance", "variance"]
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40]
    assert [float(r["epoch"]) for r in rows] == HISTORY["_epoch"]
    assert [float(r["variance"]) for r in rows] == HISTORY["variance"]
    assert not (tmp_path / "run" / TENSORBOARD_DIR).exists()
    assert not list((tmp_path / "run").glob(".*"))  # no temporary files left


def test_a_run_without_a_curve_writes_nothing_and_steps_default_to_points(tmp_path: Path) -> None:
    assert write_run_logs(tmp_path, {}, "random") == []
    header, rows = curve_rows({"loss": [1.0, 0.5, 0.25]})
    assert header == ["point", "epoch", "step", "loss"] and [r[2] for r in rows] == [1, 2, 3]
    _, rows = curve_rows({"loss": [1.0, 0.5], "kl": [0.1]})
    assert math.isnan(rows[1][4])  # a term missing a point is NaN, never shifted


def test_tensorboard_event_files_hold_every_term(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "runs" / "abcd1234"
    write_run_logs(run, HISTORY, "vicreg on digits, seed 0", steps=40)
    write_run_logs(run, HISTORY, "vicreg on digits, seed 0", steps=40)  # a retrained run replaces its events
    events = run / TENSORBOARD_DIR
    assert len(list(events.glob("events.out.tfevents.*"))) == 1
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"loss/loss", "loss/invariance", "loss/variance"}
    scalars = acc.Scalars("loss/invariance")
    assert [s.step for s in scalars] == [10, 20, 30, 40]
    assert [s.value for s in scalars] == pytest.approx(HISTORY["invariance"])
    assert not list(run.glob(".*"))
