"""Every recipe script answers `--help` (argparse %-formats help strings: a bare `%` breaks it)."""

import subprocess
import sys
from pathlib import Path

import pytest

RECIPES = sorted((Path(__file__).parents[1] / "recipes").glob("*.py"))


@pytest.mark.parametrize("script", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_script_prints_its_help(script):
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--output_dir" in result.stdout
