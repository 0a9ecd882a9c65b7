"""The machinery of a PolicyEngine custom backend.

Maintained by the template this project was made from and updated with
``cruft update``: change it there, not here. It never imports ``api``
(the project's own code); ``api`` uses what this package exports below.
"""

from policyengine_backend.app import create_app
from policyengine_backend.endpoints import worker_endpoint
from policyengine_backend.models import Household, Policy
from policyengine_backend.worker_functions import Problem, Simulations

__all__ = [
    "Household",
    "Policy",
    "Problem",
    "Simulations",
    "create_app",
    "worker_endpoint",
]
