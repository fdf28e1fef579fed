"""Bench: reading what the engine stored.

Suite files (``benchmarks.toml``: :mod:`~sslbench.bench.suites`, with the TOML line locator of
:mod:`~sslbench.bench.toml_lines` so every error names file, line and key), the claims a suite states
and the statistics that judge them (:mod:`~sslbench.bench.claims`), tables of runs as mean ± std over
seeds (:mod:`~sslbench.bench.tables`), suite reports (:mod:`~sslbench.bench.reports`), comparisons of two
runs or two suites (:mod:`~sslbench.bench.compare`), plots (:mod:`~sslbench.bench.plots`) and the live
terminal display of a running grid (:mod:`~sslbench.bench.live`). Every number is formatted from the
metric declarations evaluators make (:class:`~sslbench.sdk.api.Metric`), never guessed from a name. Bench
imports the engine and the sdk; only the CLI imports bench.
"""
