"""Each country's rendered project passes its own test suite.

That suite runs real policyengine calculations and compares them with a
direct Simulation, imports the Modal app and serves the API in-process.
"""

import re

import pytest

from tests.conftest import run_rendered_suite


@pytest.mark.parametrize("country", ["us", "uk"])
def test_rendered_project_passes_its_own_tests(tmp_path, country):
    result = run_rendered_suite(country, tmp_path)

    assert result.returncode == 0, result.stdout[-6000:]
    summary = re.search(r"(\d+) passed", result.stdout)
    assert summary and int(summary.group(1)) >= 10, result.stdout[-3000:]
