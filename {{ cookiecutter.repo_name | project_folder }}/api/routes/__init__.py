"""This project's own endpoints: one module per feature, each an APIRouter.

Add a feature's router to ROUTERS and ``api/main.py`` serves it.
"""

from fastapi import APIRouter

from api.routes import earnings_chart

ROUTERS: list[APIRouter] = [earnings_chart.router]
