"""The engine: what turns a grid of cells into stored results.

The plugin manager (:mod:`~sslbench.engine.plugins`) loads every entry point of the ``sslbench`` group
into a :class:`~sslbench.engine.plugins.Registry`; the runner (:mod:`~sslbench.engine.runner`) turns the
user's request into JSON-serialisable cells (:mod:`~sslbench.engine.cells`), decides for each whether a
stored run can be reused, trains it through the one training loop (:mod:`~sslbench.engine.train`, with
the batched on-device augmentation of :mod:`~sslbench.engine.augment`), checkpoints, embeds and
evaluates it, and writes everything to the SQLite store (:mod:`~sslbench.engine.store`). Methods without
a decoder get one trained on their frozen representations (:mod:`~sslbench.engine.decoding`), injected
into the evaluators' inputs. The engine imports the sdk, never :mod:`sslbench.bench` or the CLI.
"""
