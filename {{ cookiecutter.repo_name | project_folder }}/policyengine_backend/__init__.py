"""The machinery of a PolicyEngine custom backend.

Maintained by the template this project was made from and updated with
``cruft update``: change it there, not here. It never imports ``api`` (the
project's own code); ``api`` uses the names below, its public API. Every
other module here is private (its name starts with an underscore) and may
change in any update: `make lint` refuses them in ``api/``.

Where things are, for whoever maintains it:

- ``_web/``: the HTTP layer. ``create_app`` wires the app (``app.py``);
  error answers (``responses.py``), the middleware, the routes, worker
  endpoints, ``/docs``, and the guards that keep a route from stalling
  the server.
- ``_engine/``: a request's path: its checks, the answer cache, the
  worker's queue (``engine.py`` ties them together).
- ``_worker/``: the calculation worker: supervised from the server
  (``supervisor.py``), what runs in it (``child.py``), the messages between
  them and how memory is read.
- ``_model/``: the country model: tax-benefit systems, households,
  policies, worker functions, metadata.
- ``_jobs/``: jobs, run here or on Modal.
- ``_population/``: society-wide impacts (``POST /jobs/impact``): datasets,
  chunks fanned out here or on Modal, and the economy's figures.
- ``_errors.py`` (every error and its answer), ``_settings.py``,
  ``_models.py`` (request and answer bodies), ``_logs.py``, ``_cache.py``,
  ``_dev.py`` (`make dev`).

Importing it builds nothing: ``create_app`` makes the engine.
"""

from policyengine_backend._errors import Problem
from policyengine_backend._model.functions import Simulations
from policyengine_backend._models import Household, Policy
from policyengine_backend._population.economy import values as unweighted
from policyengine_backend._population.request import PopulationRequest
from policyengine_backend._web.app import create_app
from policyengine_backend._web.endpoints import worker_endpoint
from policyengine_backend._web.population import population_endpoint

__all__ = [
    "Household",
    "Policy",
    "PopulationRequest",
    "Problem",
    "Simulations",
    "create_app",
    "population_endpoint",
    "unweighted",
    "worker_endpoint",
]
