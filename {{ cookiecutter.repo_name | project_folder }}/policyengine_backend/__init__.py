"""The machinery of a PolicyEngine custom backend.

Maintained by the template this project was made from and updated with
``cruft update``: change it there, not here. It never imports ``api``
(the project's own code); ``api`` uses what this package exports below.
"""

from policyengine_backend.app import create_app

__all__ = ["create_app"]
