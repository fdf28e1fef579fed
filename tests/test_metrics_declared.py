"""Evaluators declare their metrics and pictures; tables, exports, claims, plots and reports read the
declarations (never a name suffix), and an undeclared metric falls back to a plain number."""

from __future__ import annotations

import ast
import csv
import io
import json
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from sslbench import hookimpl
from sslbench.bench.claims import evaluate_claims
from sslbench.bench.compare import compare_runs
from sslbench.bench.reports import collect, content_metrics, make_plots, other_metrics, style_metrics, write_report
from sslbench.bench.suites import load_suites
from sslbench.bench.tables import Catalog, export, format_value, metric_columns, summarise
from sslbench.engine import plugins
from sslbench.engine.plugins import build_registry
from sslbench.engine.runner import InProcessExecutor
from sslbench.engine.store import Store
from sslbench.sdk.api import BuildContext, EvalInputs, Evaluator, ImageData, Method, Metric, Picture, resolve_params
from sslbench.sdk.metrics import ROLES, undeclared
from sslbench.sdk.protocol import MNIST_MLP

REPO = Path(__file__).resolve().parent.parent
SHAPE = (1, 4, 4)
CLASSES = 6


@pytest.fixture(scope="module")
def registry():  # type: ignore[no-untyped-def]
    return build_registry()


# --------------------------------------------------------------------------------------------------
# every first-party evaluator declares what it returns


class PixelCode(Method):
    """Representation = the flattened image, decoder = its inverse, uncertainty = image darkness:
    every evaluator (generation and uncertainty included) can run on it."""

    name = "pixel-code"
    family = "generative"

    def loss(self, views: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover - never trained
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z.view(-1, *SHAPE).clamp(0, 1)

    def uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 - x.flatten(1).mean(1)


def tiny_data(n_train: int = 120, n_test: int = 60) -> ImageData:
    """Six classes (prototype + noise), a categorical and a continuous attribute, one object position."""
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(CLASSES, *SHAPE, generator=g)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % CLASSES
        x = (protos[y] + 0.05 * torch.randn(n, *SHAPE, generator=g)).clamp(0, 1)
        attrs = torch.stack([(y % 2).float(), x.flatten(1).mean(1), 4 * torch.rand(n, generator=g), 4 * torch.rand(n, generator=g)], 1)
        return (x * 255).round().to(torch.uint8), y, attrs

    (train_x, train_y, train_a), (test_x, test_y, test_a) = split(n_train), split(n_test)
    return ImageData(
        name="tiny", train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, classes=[str(c) for c in range(CLASSES)],
        train_attrs=train_a, test_attrs=test_a, attr_names=["parity", "brightness", "ball_x", "ball_y"],
        attr_kinds=["binary", "continuous", "continuous", "continuous"],
    )


#: cheap options per evaluator (the rest are the declared defaults)
CHEAP = {
    "linear": {"epochs": 3}, "mlp": {"epochs": 3, "hidden": 8}, "attributes": {"epochs": 3}, "gmm": {"n_init": 1},
    "samples": {"per_class": 2, "num_eval": 5, "num_recon": 8}, "uncertainty": {"max_images": 30, "levels": 1},
    "fid": {"num_images": 30, "batch_size": 30},
}


def test_every_installed_evaluator_declares_each_metric_it_returns(registry, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from sslbench_plugins.evaluators import fid

    # FID's Inception network replaced by a tiny feature map: the names it returns are what matters
    monkeypatch.setattr(fid, "load_feature_network", lambda weights, device: (lambda x: [torch.nn.functional.avg_pool2d(x, 2)]))
    data = tiny_data()
    ctx = BuildContext(protocol=MNIST_MLP, image_shape=SHAPE, num_train=120, num_classes=CLASSES, device=torch.device("cpu"))
    method = PixelCode(ctx)
    with torch.no_grad():
        train_z, test_z = method.embed(data.train_x.float() / 255), method.embed(data.test_x.float() / 255)
    inputs = EvalInputs(
        train_z=train_z, test_z=test_z, data=data, method=method, device=torch.device("cpu"), seed=0,
        selection="val", val_index=torch.arange(0, 120, 4), run_dir=str(tmp_path),
    )
    first_party = {"knn", "linear", "mlp", "gmm", "mse", "fid", "samples", "attributes", "position", "uncertainty"}
    assert first_party <= set(registry.evaluators)
    returned: dict[str, set[str]] = {}
    for name in sorted(first_party):
        cls = registry.evaluators[name]
        assert cls.metrics, f"{name} declares no metrics"
        evaluator = cls()
        assert evaluator.applies(inputs) is None, name
        out = evaluator.evaluate(inputs, **resolve_params(name, cls.params, CHEAP.get(name, {})))
        assert out, name
        for metric in out:
            declared = cls.metric(metric)
            assert declared is not None, f"{name} returns {metric!r} but does not declare it"
            assert declared.role in ROLES and declared.help, (name, metric)
        returned[name] = set(out)
    assert {"linear_top5", "mlp_top5", "position_matched_px", "fid_samples", "attr_parity", "attr_brightness"} <= set().union(*returned.values())
    # every picture an evaluator wrote is declared by it, and every declared picture was written
    written = {p.name for p in tmp_path.glob("*.png")}
    declared_files = {p.file for cls in registry.evaluators.values() for p in cls.pictures}
    assert written == declared_files == {"samples.png", "reconstructions.png", "uncertainty_hist.png", "uncertainty_vs_corruption.png"}


def test_declarations_reproduce_the_display_of_before(registry) -> None:  # type: ignore[no-untyped-def]
    """Percent, detail, style and plot placement of every first-party metric are what the suffix rules
    of the first version gave (``_acc``/``_top5`` in %, ``_k``/``_epoch``/``_frozen_decoder`` details,
    ``attr_*`` style)."""
    names = [
        "knn_acc", "knn_k", "linear_acc", "linear_top5", "linear_epoch", "mlp_acc", "mlp_top5", "mlp_epoch", "gmm_acc",
        "gmm_ari", "gmm_nmi", "mse", "mse_frozen_decoder", "fid_recon", "fid_samples", "samples_knn_agreement",
        "recon_knn_agreement", "attr_colour", "attr_x", "attr_mean_acc", "attr_mean_r2", "position_error_px",
        "position_baseline_px", "position_r2", "position_matched_px", "uncertainty_spearman", "uncertainty_spearman_blur",
        "uncertainty_spearman_noise", "uncertainty_spearman_occlusion", "uncertainty_clean_mean",
    ]
    catalog = Catalog.of(registry)
    for name in names:
        declared = catalog.metric(name)
        assert declared.help != undeclared(name).help, f"{name} is not declared"
        assert declared.percent == name.endswith(("_acc", "_top5")), name
        assert (declared.role == "detail") == name.endswith(("_k", "_epoch", "_frozen_decoder")), name
        assert (declared.section == "style") == name.startswith("attr_"), name
    content = [n for n in names if n.endswith("_acc") and not n.startswith("attr_")]
    assert content_metrics(names, catalog) == content
    assert style_metrics(names, catalog) == ["attr_mean_acc", "attr_mean_r2"]
    before_others = [n for n in names if n not in content and not n.startswith("attr_") and not n.endswith(("_k", "_epoch", "_frozen_decoder", "_acc", "_top5"))]
    assert other_metrics(names, catalog) == before_others
    assert catalog.metric("mse").higher_is_better is False and catalog.metric("knn_k").higher_is_better is None
    assert catalog.metric("position_error_px").unit == "pixels"


# --------------------------------------------------------------------------------------------------
# a third-party evaluator: its declarations drive every table, export, claim, plot and report


class Probe(Evaluator):
    name = "probe3p"
    description = "a third party's evaluator"
    metrics = (
        Metric("share", unit="fraction", help="a share of the test images"),
        Metric("offset_px", unit="pixels", higher_is_better=False, section="position", help="an offset in pixels"),
        Metric("chosen", unit="count", higher_is_better=None, role="detail", help="a chosen hyper-parameter"),
    )
    pictures = (Picture("map.png", "where the probe looks", section="Probe maps"),)

    def evaluate(self, inputs: EvalInputs, **options: Any) -> dict[str, float]:
        run_dir = Path(inputs.run_dir or ".")
        Image.new("RGB", (8, 8), (0, 200, 0)).save(run_dir / "map.png")
        Image.new("RGB", (8, 8), (200, 0, 0)).save(run_dir / "scribble.png")  # declared by nobody
        return {"share": 0.25 + 0.25 * inputs.seed, "offset_px": 3.5 + inputs.seed, "chosen": 7.0}


@hookimpl
def _register_evaluators(register) -> None:  # type: ignore[no-untyped-def]
    register(Probe)


THIRD_PARTY = types.ModuleType("probe3p_plugin")
THIRD_PARTY.register_evaluators = _register_evaluators  # type: ignore[attr-defined]

SUITE = """\
[suites.probe]
methods = ["random"]
datasets = ["digits"]
evaluators = ["probe3p"]
seeds = 2
claims = ["random > random on share", { method = "random", metric = "share", value = "37.5%", tolerance = "1%" }]

[suites.probe.budgets.cpu]
epochs = 0
"""


@pytest.fixture(scope="module")
def third_party(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The random encoder on digits (two seeds) evaluated by the third-party probe, plus a metric
    stored by an evaluator that is not installed."""
    folder = tmp_path_factory.mktemp("third-party")
    registry = build_registry(extra_plugins=[("probe3p-plugin", THIRD_PARTY)])
    assert "probe3p" in registry.evaluators
    path = folder / "suites.toml"
    path.write_text(textwrap.dedent(SUITE))
    before, plugins._REGISTRY = plugins._REGISTRY, registry  # as if the plugin were installed
    try:
        suite = load_suites(path).get("probe")
    finally:
        plugins._REGISTRY = before
    cells = suite.cells(registry, "cpu")
    store = Store(folder / "home")
    executor = InProcessExecutor(store, registry)
    assert all(executor.submit(c).status == "done" for c in cells)
    store.put_metrics(cells[0].run_id, "uninstalled", {}, "val", {"lost_acc": 0.5})
    return registry, store, suite, cells


def test_tables_and_exports_follow_the_declarations(third_party, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    registry, store, _, _ = third_party
    rows = summarise(store, store.runs())
    assert rows[0].sources == {"share": "probe3p", "offset_px": "probe3p", "chosen": "probe3p", "lost_acc": "uninstalled"}
    catalog = Catalog.of(registry, rows)
    md = export(rows, "md", catalog=catalog)
    assert "37.5 ± 17.7" in md  # a fraction in %: 0.25 and 0.5
    assert "4 ± 0.71" in md  # pixels as they are: 3.5 and 4.5
    assert " 0.5 " in md and "50.0" not in md  # no guess from "_acc": its evaluator is not installed
    header = md.splitlines()[0]
    assert "share" in header and "offset_px" in header and "chosen" not in header  # a detail
    csv_metrics = {r["metric"] for r in csv.DictReader(io.StringIO(export(rows, "csv", catalog=catalog)))}
    assert "chosen" in csv_metrics and "share" in csv_metrics  # one line per metric, details included
    records = json.loads(export(rows, "json", catalog=catalog))
    assert records[0]["metrics"]["chosen"]["values"] == [7.0, 7.0]
    assert metric_columns(rows, catalog=catalog) == ["offset_px", "share", "lost_acc"]
    # the default catalog is the installed registry's: the same display without passing one
    monkeypatch.setattr(plugins, "_REGISTRY", registry)
    assert export(rows, "md") == md
    assert format_value("share", [0.5]) == "50.0" and format_value("offset_px", [0.5]) == "0.5"


def test_an_undeclared_metric_falls_back_honestly(registry) -> None:  # type: ignore[no-untyped-def]
    catalog = Catalog.of(registry)
    fallback = catalog.metric("lost_acc", "uninstalled")
    assert fallback == undeclared("lost_acc") and not fallback.percent and fallback.higher_is_better is None
    assert fallback.section == "other" and fallback.role == "headline"
    assert catalog.metric("knn_surprise", "knn") == undeclared("knn_surprise")  # installed, but not declared by it
    assert catalog.metric("knn_acc", "knn").percent and catalog.metric("knn_acc").percent
    assert catalog.metric("attr_hair").section == "style" and catalog.metric("attr_hair").role == "secondary"
    assert format_value("lost_acc", [0.5], catalog, "uninstalled") == "0.5"


def test_claims_compare_and_report_follow_the_declarations(third_party, tmp_path) -> None:  # type: ignore[no-untyped-def]
    registry, store, suite, cells = third_party
    results = collect(store, suite, "cpu", cells, Catalog.of(registry))
    claims = evaluate_claims(suite.claims, results.values, "cpu", results.catalog)
    assert claims[0].figures == "random 37.5 ± 17.7 (n=2) vs random 37.5 ± 17.7 (n=2)"
    assert claims[0].detail.startswith("difference +0.00 pp")
    assert "vs reference 37.5% ± 1%" in claims[1].figures and claims[1].status == "held"
    assert claims[1].claim.text == "random share = 37.5% ± 1%" and claims[1].detail == "off by +0.00 pp"
    a, b = store.get_run(cells[0].run_id), store.get_run(cells[1].run_id)
    compared = {r[0]: r[1:] for r in compare_runs(store, a, b, results.catalog).rows}  # type: ignore[arg-type]
    assert compared["share (probe3p, val)"] == ["25.0", "50.0", "+25.00"]
    assert compared["offset_px (probe3p, val)"] == ["3.5", "4.5", "+1"]
    assert compared["lost_acc (uninstalled, val)"] == ["0.5", "-", "-"]
    # plots: the fraction as an accuracy bar, the pixels (not the detail) as a panel
    made = dict(make_plots(results, tmp_path / "plots")["digits"])
    assert "Accuracy per method" in made and "Other metrics" in made
    text = write_report(store, results, tmp_path / "report", "md")[0].read_text()
    table = next(line for line in text.splitlines() if line.startswith("| dataset"))
    assert "share" in table and "offset_px" in table and "chosen" not in table
    # the declared picture lands in the section its evaluator names, the undeclared one in "Other pictures"
    sections = text.split("\n## ")
    probe = next(s for s in sections if s.startswith("Probe maps"))
    other = next(s for s in sections if s.startswith("Other pictures"))
    assert "map.png" in probe and "where the probe looks" in probe and "scribble.png" not in probe
    assert "scribble.png" in other and text.index("## Probe maps") < text.index("## Other pictures")
    assert (tmp_path / "report" / "runs" / f"digits-random-seed{cells[0].seed}-map.png").is_file()


# --------------------------------------------------------------------------------------------------
# the core names no metric and no plugin file


FORBIDDEN = ("_acc", "_top5", "attr_", "samples.png", "reconstructions.png", "uncertainty_")


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


@pytest.mark.parametrize("package", ["bench", "engine"])
def test_the_core_guesses_nothing_from_metric_names(package: str) -> None:
    offending = []
    for path in sorted((REPO / "sslbench" / package).glob("*.py")):
        source = path.read_text(encoding="utf-8")
        docs = _docstring_lines(ast.parse(source))
        for number, line in enumerate(source.splitlines(), 1):
            if number not in docs and any(word in line for word in FORBIDDEN):
                offending.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offending, "metric names or plugin files named outside docstrings:\n" + "\n".join(offending)


def test_comparison_records_say_which_side_is_better_from_the_declared_direction() -> None:
    from sslbench.bench.compare import _direction
    from sslbench.sdk.metrics import Metric

    acc, err = Metric("x_acc", unit="fraction"), Metric("x_px", unit="pixels", higher_is_better=False)
    assert _direction(acc, 0.1) == {"unit": "fraction", "higher_is_better": True, "better": "B"}
    assert _direction(err, 0.1)["better"] == "A" and _direction(err, -2.0)["better"] == "B"
    assert _direction(Metric("k", unit="count", higher_is_better=None, role="detail"), 3.0)["better"] is None
    assert _direction(acc, None)["better"] is None and _direction(acc, 0.0)["better"] == "equal"
