"""The machinery of a PolicyEngine custom backend.

Maintained by the template this project was made from and updated with
``cruft update``: change it there, not here. It never imports ``api``
(the project's own code); ``api`` uses the names exported below.

They are imported on first use, so that importing one module of the
package (its settings, say) does not build the app and its engine, which
read the settings from the environment once.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policyengine_backend._model.functions import Problem, Simulations
    from policyengine_backend._models import Household, Policy
    from policyengine_backend._web.app import create_app
    from policyengine_backend._web.endpoints import worker_endpoint

# Each public name, and the module it lives in.
_EXPORTS = {
    "Household": "policyengine_backend._models",
    "Policy": "policyengine_backend._models",
    "Problem": "policyengine_backend._model.functions",
    "Simulations": "policyengine_backend._model.functions",
    "create_app": "policyengine_backend._web.app",
    "worker_endpoint": "policyengine_backend._web.endpoints",
}
__all__ = [
    "Household",
    "Policy",
    "Problem",
    "Simulations",
    "create_app",
    "worker_endpoint",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'policyengine_backend' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
