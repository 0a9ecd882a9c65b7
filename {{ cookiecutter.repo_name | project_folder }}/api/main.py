"""The app: the backend's endpoints, with this project's routes.

The backend's own endpoints (``/calculate``, ``/compare``, jobs, model
metadata, ``/health``) come from ``policyengine_backend``; each feature of
this project is a router in ``api/routes/``, included below.
"""

from api.routes import ROUTERS
from policyengine_backend import create_app

app = create_app(
    title={{ cookiecutter.project_name | tojson }},
    description={{ cookiecutter.description | tojson }},
    routers=ROUTERS,
)
