"""The plugin SDK: everything a method, data set or evaluator plugin imports, and nothing it must not.

The contract (:mod:`~sslbench.sdk.api`: ``Method``, ``DatasetPlugin``, ``Evaluator``, ``Architecture``,
``ImageData``, ``EvalInputs``, ``Param``, ``Metric``), the hook specifications plugins implement
(:mod:`~sslbench.sdk.hookspecs`), the protocols data sets declare (:mod:`~sslbench.sdk.protocol`), the
protocol's networks (:mod:`~sslbench.sdk.nets`), helpers for loading data (:mod:`~sslbench.sdk.data`),
for evaluating frozen representations (:mod:`~sslbench.sdk.evaluation`, :mod:`~sslbench.sdk.generation`),
losses (:mod:`~sslbench.sdk.losses`, :mod:`~sslbench.sdk.power_spherical`), picture grids
(:mod:`~sslbench.sdk.pictures`) and atomic file writes (:mod:`~sslbench.sdk.files`). The sdk imports
nothing from :mod:`sslbench.engine`, :mod:`sslbench.bench` or the CLI, so a plugin that imports only the
sdk can never reach into the runner. ``from sslbench.sdk import Method, Param, hookimpl`` is the short
form of the imports most plugins need (the names in ``__all__`` below; ``docs/plugins.md`` is the guide).
"""

from __future__ import annotations

from sslbench.sdk.api import (
    FAMILIES,
    Architecture,
    BuildContext,
    DataError,
    DatasetPlugin,
    EvalInputs,
    Evaluator,
    ImageData,
    Method,
    Register,
)
from sslbench.sdk.hookspecs import hookimpl
from sslbench.sdk.metrics import Metric, Picture
from sslbench.sdk.params import Param, ParamError
from sslbench.sdk.protocol import AugmentSpec, Protocol

__all__ = [
    "FAMILIES", "Architecture", "AugmentSpec", "BuildContext", "DataError", "DatasetPlugin", "EvalInputs",
    "Evaluator", "ImageData", "Method", "Metric", "Param", "ParamError", "Picture", "Protocol", "Register",
    "hookimpl",
]
