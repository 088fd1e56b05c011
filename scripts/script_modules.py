"""The other scripts of this folder as modules (they have no ``.py`` suffix), for the scripts
that build on one another (``bench_cluster`` and ``bench_memory`` on ``bench_ws``). A script's
own folder is first on ``sys.path``, so they ``import script_modules``."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parent


def load_script(name: str) -> ModuleType:
    """``scripts/<name>`` as a module (registered in ``sys.modules``: dataclasses look their
    module up)."""
    loader = importlib.machinery.SourceFileLoader(name, str(SCRIPTS / name))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
