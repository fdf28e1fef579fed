"""The terminal display at 80 columns: the live progress line of a multi-term method keeps its bar and
ETA, and comparison tables keep distinct headers (with a legend) instead of cutting them to ``linea…``."""

from __future__ import annotations

import re
import time

from rich.console import Console

from sslbench.bench.fitted import short_headers
from sslbench.bench.live import LiveProgress, cell_label, epoch_of, fit_terms
from sslbench.bench.tables import Row, rich_table
from sslbench.engine.cells import Cell

VICREG = {"loss": 23.4567, "invariance": 0.51234, "variance": 1.2345, "covariance": 0.0123}
CR_VAE = {"loss": 612.25, "elbo_0": 300.1, "elbo_1": 301.2, "kl_0": 12.5, "kl_1": 12.7, "consistency": 3.25}


def _console(width: int) -> Console:
    return Console(width=width, record=True, force_terminal=True, color_system=None)


def _cell(method: str, dataset: str = "fashion-mnist", seed: int = 2, epochs: int = 10) -> Cell:
    return Cell(method=method, dataset=dataset, seed=seed, epochs=epochs, protocol={"name": "p"})


def _progress_lines(width: int, terms: dict[str, float], overall: str | None = "suite table1-mnist (cpu)") -> list[str]:
    """The progress display of cell 12 of 24 at step 30 of 100, rendered once on a console ``width`` wide."""
    console = _console(width)
    live = LiveProgress(console, overall=overall, total=24)
    live.position = 11
    report = live.on_start(_cell(next(iter(["vicreg"] if "invariance" in terms else ["cr-vae"]))))
    report(10, 100, terms)
    time.sleep(0.05)
    report(30, 100, terms)  # two samples: rich has a speed, hence an ETA
    console.print(live.progress.get_renderable())
    return console.export_text().splitlines()


def test_progress_of_multi_term_methods_keeps_bar_eta_and_loss_at_80_columns() -> None:
    for terms, method in ((VICREG, "vicreg"), (CR_VAE, "cr-vae")):
        for overall in ("suite table1-mnist (cpu)", None):
            lines = _progress_lines(80, terms, overall)
            assert all(len(line) <= 80 for line in lines), lines
            cell = next(line for line in lines if method in line)
            assert cell.startswith("12/24" if overall else "cell 12/24"), cell
            assert "━" in cell and re.search(r"ETA \d+:\d\d:\d\d", cell), cell  # bar and an estimate
            assert re.search(r"(s2|seed 2) (ep|epoch) 3/10", cell), cell
            assert re.search(r"loss \d", cell), cell


def test_progress_shows_the_other_terms_only_when_there_is_room() -> None:
    narrow = next(line for line in _progress_lines(80, VICREG) if "vicreg" in line)
    wide = next(line for line in _progress_lines(160, VICREG) if "vicreg" in line)
    assert "covariance" not in narrow
    assert "cell 12/24 fashion-mnist vicreg seed 2 epoch 3/10" in wide
    assert "invariance 0.5123" in wide and "variance 1.234" in wide and "covariance 0.0123" in wide
    assert len(wide) <= 160


def test_fit_terms_puts_the_main_loss_first_and_stops_at_the_room() -> None:
    assert fit_terms({"kl": 0.5, "loss": 1.23456}, 100) == "loss 1.235  kl 0.5"
    assert fit_terms({"kl": 0.5, "loss": 1.23456}, 12) == "loss 1.235"
    assert fit_terms({"loss": 1.23456}, 3) == "loss 1.235"  # the main loss is always there


def test_epoch_and_label() -> None:
    assert [epoch_of(s, 100, 10) for s in (1, 10, 11, 100)] == [1, 1, 2, 10]
    assert epoch_of(5, 0, 0) == 0
    cell = _cell("vicreg")
    assert cell_label(cell, 3, 8, 2, False, 80) == "cell 3/8 vicreg seed 2 epoch 2/10"
    assert cell_label(cell, 3, 8, 2, True, 40) == "3/8 fashion-mnist vicreg s2 ep 2/10"
    assert cell_label(cell, 3, 8, 2, True, 30) == "3/8 vicreg s2 ep 2/10"  # the data set goes before the method is cut
    assert cell_label(cell, 3, 8, 2, True, 18) == "3/8 vi… s2 ep 2/10"  # the method cut as a last resort


# -- tables ------------------------------------------------------------------------------------------


def _rows() -> list[Row]:
    rows = []
    for method in ("vicreg", "cr-vae"):
        row = Row("fashion-mnist", method, "abc", 10, seeds=[0, 1, 2])
        row.metrics = {"knn_acc": [0.9, 0.91, 0.92], "linear_acc": [0.8, 0.82, 0.81], "linear_top5": [0.99, 0.98, 0.97],
                       "knn_acc [k_max=5]": [0.9, 0.9, 0.9], "mlp_acc": [0.85, 0.86, 0.84]}
        row.sources = {name: name.split("_")[0] for name in row.metrics}
        row.names = {"knn_acc [k_max=5]": "knn_acc"}
        row.images_per_s, row.augment_share = [1234.0], [0.05]
        rows.append(row)
    return rows


def test_short_headers_stay_distinct() -> None:
    short = short_headers(["knn_acc", "linear_acc", "linear_top5", "lin_top5", "knn_acc [k_max=5]", "knn_acc [k_max=15]"])
    assert short["knn_acc"] == "knn_acc" and short["linear_acc"] == "linear_acc"  # short enough: kept
    assert len(set(short.values())) == len(short)
    assert short["linear_top5"] != short["lin_top5"] and len(short["linear_top5"]) <= 10
    assert short["knn_acc [k_max=5]"] == "knn_acc#1" and short["knn_acc [k_max=15]"] == "knn_acc#2"


def test_table_at_80_columns_keeps_distinct_headers_and_a_legend() -> None:
    console = _console(80)
    console.print(rich_table(_rows(), title="fashion-mnist: protocol p (abc), selection val"))
    text = console.export_text()
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), text
    assert "…" not in text and "linea…" not in text
    header_words = " ".join(line for line in lines if "dataset" in line).split()
    assert "linear_acc" in header_words and "lin_top5" in header_words and "knn_acc#1" in header_words
    assert "lin_top5 = linear_top5" in text and "knn_acc#1 = knn_acc [k_max=5]" in text
    assert "91.0 ± 1.0" in text and "98.0 ± 1.0" in text  # values whole, never wrapped
    assert text.count("fashion-mnist   vicreg") >= 2  # split: each part repeats the key columns


def test_table_with_room_is_the_full_table() -> None:
    console = _console(200)
    console.print(rich_table(_rows(), title="t"))
    text = console.export_text()
    assert "linear_top5" in text and "knn_acc [k_max=5]" in text and "lin_top5 =" not in text
    assert text.count("vicreg") == 1


# -- parameters ---------------------------------------------------------------------------------------


def test_describe_gives_typed_defaults_and_the_protocol_learning_rate(registry) -> None:  # type: ignore[no-untyped-def]
    from sslbench.engine.plugins import describe, number_text

    methods = {r["name"]: r for r in describe(registry, "methods")}
    vae = {p["name"]: p for p in methods["beta-vae"]["parameters"]}
    assert vae["likelihood"]["default"] == "gaussian" and vae["likelihood"]["type"] == "str"  # not "'gaussian'"
    assert vae["likelihood"]["choices"] == ["gaussian", "bernoulli"] and vae["beta"]["default"] == 4.0
    assert vae["lr"]["default_text"] == "protocol default 1e-4" and vae["lr"]["protocol_default"] == 1e-4
    assert {p["name"]: p for p in methods["simclr"]["parameters"]}["lr"]["default_text"] == "protocol default 1e-3"
    moco = {p["name"]: p for p in methods["moco"]["parameters"]}
    assert moco["symmetric"]["default"] is False and moco["symmetric"]["type"] == "bool"
    assert all(p["help"] for r in methods.values() for p in r["parameters"])
    assert methods["beta-vae"]["params"]["likelihood"] == "gaussian"
    assert [number_text(v) for v in (1e-3, 1e-4, 0.5, 200, 0.02, 2.5e-5)] == ["1e-3", "1e-4", "0.5", "200", "0.02", "2.5e-5"]


def test_list_methods_shows_types_defaults_and_help(registry) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from sslbench.cli import app

    out = CliRunner().invoke(app, ["list-methods", "--json"])
    assert out.exit_code == 0, out.output
    records = {r["name"]: r for r in json.loads(out.output)}
    assert records["beta-vae"]["params"]["likelihood"] == "gaussian" and records["moco"]["params"]["symmetric"] is False
    listing = CliRunner().invoke(app, ["list-methods"]).output
    assert "lr: float = protocol default 1e-3" in listing and "lr=0.0" not in listing and "'gaussian'" not in listing
    shown = CliRunner().invoke(app, ["list-methods", "vicreg"]).output
    assert "expander_dim" in shown and "int" in shown and "2048" in shown and "protocol default 1e-3" in shown
    assert "weight of the invariance term" in shown and ">= 0" in shown and "simclr" not in shown
    assert "temperature" in CliRunner().invoke(app, ["list-evaluators", "-v"]).output
    wrong = CliRunner().invoke(app, ["list-methods", "vicrg"])
    assert wrong.exit_code == 2 and "Did you mean 'vicreg'" in wrong.output


# -- figures -------------------------------------------------------------------------------------------


def test_figures_are_written_as_svg_beside_the_png_and_say_where_the_accuracy_axis_starts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sslbench.bench import plots

    high = {"simclr": {"knn_acc": [0.91, 0.93]}, "vae": {"knn_acc": [0.72, 0.75]}}
    png = plots.metric_bars("t", list(high), high, ["knn_acc"], tmp_path / "acc.png")
    assert png == tmp_path / "acc.png" and png.read_bytes()[:4] == b"\x89PNG"
    svg = (tmp_path / "acc.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "axis starts at 60" in svg and "y axis starts" in svg  # text kept as text: the note is searchable
    low = {"random": {"knn_acc": [0.05, 0.08]}, "vae": {"knn_acc": [0.72, 0.75]}}
    plots.metric_bars("t", list(low), low, ["knn_acc"], tmp_path / "low.png")
    assert "axis starts" not in (tmp_path / "low.svg").read_text()  # starts at 0: nothing to say
    curves = plots.training_curves("t", {"vicreg": {0: {"loss": [3.0, 2.0, 1.0], "_epoch": [1, 2, 3]}}}, tmp_path / "curves.png")
    assert curves is not None and (tmp_path / "curves.svg").is_file()
    assert not list(tmp_path.glob(".*"))  # written atomically, no temporary files left
