"""tests/lazy_iri.py, the plugin that defers jsonschema's IRI grammar: nbformat imports without compiling it, and an
IRI is still checked by the real module when one is asked for."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_nbformat_imports_without_the_iri_grammar_and_iris_are_still_checked() -> None:
    script = """
import sys
import tests.lazy_iri
import nbformat, jsonschema
deferred = getattr(sys.modules["rfc3987_syntax"], "__lazy_stand_in__", False)
grammar = "rfc3987_syntax.syntax_helpers" in sys.modules
checker = jsonschema.FormatChecker()
print(deferred, grammar, checker.conforms("http://example.com/ä", "iri"), checker.conforms("no iri", "iri"))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.split() == ["True", "False", "True", "False"]


def test_the_plugin_ran_before_nbval_imported_nbformat_in_this_test_process() -> None:
    plugin = sys.modules["tests.lazy_iri"]
    assert plugin.INSTALLED, "rfc3987_syntax was imported before the plugin: is -p tests.lazy_iri in addopts?"
    assert "nbformat" in sys.modules  # nbval imported it, after the stand-in was in place
