"""sslbench: benchmark self-supervised representation learning under one declared protocol.

The package has three layers, each a subpackage, and a thin command line on top:

* :mod:`sslbench.sdk` -- what plugins import: the plugin contract, hook specs, protocols, networks,
  data and evaluation helpers. It imports nothing else of sslbench.
* :mod:`sslbench.engine` -- what runs: the plugin manager, the training loop, augmentation, the
  runner, the results store and the frozen decoder. It imports the sdk only.
* :mod:`sslbench.bench` -- what reads results: suite files, claims, run tables, reports, comparisons
  and plots. It imports the engine and the sdk.
* :mod:`sslbench.cli` -- parses, calls one function of the engine or bench, renders.

Plugins written before the sdk existed import ``sslbench.api``, ``sslbench.nets``, ``sslbench.protocol``
and so on; those names still work: each is the very module object under :mod:`sslbench.sdk` (see
:data:`LEGACY_MODULES`), not a copy.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

from sslbench.sdk.hookspecs import hookimpl

__version__ = "0.1.0"

#: module names plugins imported before the layers existed, and where each module lives now
LEGACY_MODULES = {
    f"sslbench.{name}": f"sslbench.sdk.{name}"
    for name in ("api", "hookspecs", "protocol", "nets", "data", "evaluation", "losses", "power_spherical", "pictures")
}


class _LegacyAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import sslbench.api`` gives the module ``sslbench.sdk.api`` itself (one module, two names)."""

    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        if fullname in LEGACY_MODULES:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def __init__(self) -> None:
        self._own_specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        module = importlib.import_module(LEGACY_MODULES[spec.name])
        self._own_specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module) -> None:  # type: ignore[no-untyped-def]
        # the import system stamped the alias's spec on the real module: give it its own back
        module.__spec__ = self._own_specs[module.__name__]


if not any(isinstance(f, _LegacyAlias) for f in sys.meta_path):
    sys.meta_path.append(_LegacyAlias())

__all__ = ["LEGACY_MODULES", "hookimpl", "__version__"]
