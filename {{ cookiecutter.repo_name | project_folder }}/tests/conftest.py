"""This project's tests: yours to write and keep.

The fixtures come from ``policyengine_backend.testing`` (``client``,
``served``, ``reference``, ``finished``, ``assert_same_values``): see its
docstring. ``tests/backend/`` tests the machinery and is maintained with it
(``cruft update`` rewrites it); your tests go here, next to
``test_earnings_chart.py``.
"""

pytest_plugins = ["policyengine_backend.testing"]
