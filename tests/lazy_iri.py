"""A pytest plugin loaded before every other (`-p tests.lazy_iri` in pyproject's addopts): it defers the one costly
import behind `import nbformat`.

nbval imports nbformat when pytest loads it, in the main process and in each xdist worker. nbformat imports
jsonschema for its validator, and jsonschema's format checkers import `rfc3987_syntax`, which compiles a grammar
for IRIs at import: about 1 s of the 1.2 s that `import nbformat` takes here, paid by every test process, for a
format (`iri`) that no notebook schema uses. Here `rfc3987_syntax` is a stand-in whose `is_valid_syntax` imports the
real module on its first call: nothing is skipped, the grammar is compiled only if an IRI is ever checked.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable

NAME = "rfc3987_syntax"


def _real(function: str) -> Callable[..., object]:
    """The real module's `function`, importing the module in place of the stand-in on first use."""
    module = sys.modules.get(NAME)
    if module is None or getattr(module, "__lazy_stand_in__", False):
        sys.modules.pop(NAME, None)
        module = importlib.import_module(NAME)
    return getattr(module, function)


def install() -> bool:
    """Put the stand-in in `sys.modules` unless the real module is loaded or absent; True if it was put there."""
    if NAME in sys.modules or importlib.util.find_spec(NAME) is None:
        return False
    stand_in = types.ModuleType(NAME, "stand-in: the real rfc3987_syntax is imported on first use")
    stand_in.__lazy_stand_in__ = True

    def is_valid_syntax(*args: object, **kwargs: object) -> bool:
        return _real("is_valid_syntax")(*args, **kwargs)

    def __getattr__(name: str) -> object:
        if name.startswith("__"):  # the import system asks for __path__ and the like: the stand-in has none
            raise AttributeError(name)
        return _real(name)

    stand_in.is_valid_syntax = is_valid_syntax
    stand_in.__getattr__ = __getattr__
    sys.modules[NAME] = stand_in
    return True


INSTALLED = install()  # False if something imported the real module first, or it is not installed
