"""The pluggy hook specifications of sslbench.

Every hook receives a ``register`` callback (the style of simonw/llm) and calls it once per class it
contributes. A plugin is a module (or object) with functions marked ``@sslbench.hookimpl``; it reaches
the plugin manager through an entry point in the ``sslbench`` group, first-party plugins included.
"""

from __future__ import annotations

import pluggy

from sslbench.sdk.api import Register

hookspec = pluggy.HookspecMarker("sslbench")
hookimpl = pluggy.HookimplMarker("sslbench")


@hookspec
def register_methods(register: Register) -> None:
    """Register :class:`sslbench.sdk.api.Method` subclasses: ``register(SimCLR)``."""


@hookspec
def register_datasets(register: Register) -> None:
    """Register :class:`sslbench.sdk.api.DatasetPlugin` subclasses: ``register(MNIST)``."""


@hookspec
def register_evaluators(register: Register) -> None:
    """Register :class:`sslbench.sdk.api.Evaluator` subclasses: ``register(KNN)``."""


@hookspec
def register_architectures(register: Register) -> None:
    """Register :class:`sslbench.sdk.api.Architecture` subclasses that protocols can name."""


@hookspec
def register_protocols(register: Register) -> None:
    """Register :class:`sslbench.sdk.protocol.ProtocolPreset` subclasses: named protocols (``--protocol NAME``)."""
