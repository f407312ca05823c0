"""Every module of the package imports first, in a fresh interpreter: no import cycle
depends on which module a user (or Django) happens to import before another."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import streaming

ROOT = Path(__file__).resolve().parent.parent

# Imports one module first; a module of Django models needs the app registry, which
# django.setup() fills (importing it as Django itself does).
IMPORT_FIRST = """
import importlib, sys
from django.core.exceptions import AppRegistryNotReady
name = sys.argv[1]
try:
    importlib.import_module(name)
except AppRegistryNotReady:
    import django
    django.setup()
    importlib.import_module(name)
"""

MODULES = sorted(module.name for module in pkgutil.walk_packages(streaming.__path__, "streaming."))


def test_the_walk_finds_the_modules() -> None:
    assert {"streaming.runtime", "streaming.extractors.context", "streaming.stream"} <= set(MODULES)


def import_first(name: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    return subprocess.run(
        [sys.executable, "-c", IMPORT_FIRST, name],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def imports() -> dict[str, subprocess.CompletedProcess[str]]:
    """Every module's fresh import, a few interpreters at a time."""
    names = ["streaming", *MODULES]
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(names, pool.map(import_first, names), strict=True))


@pytest.mark.parametrize("name", ["streaming", *MODULES])
def test_a_module_imports_first_in_a_fresh_interpreter(
    imports: dict[str, subprocess.CompletedProcess[str]], name: str
) -> None:
    assert imports[name].returncode == 0, imports[name].stderr


def test_the_readme_runtime_import_works_first() -> None:
    code = "from streaming.runtime import use_model, stream_to_action"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
