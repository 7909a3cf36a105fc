"""The procrastinate app of the workers."""

from __future__ import annotations

import procrastinate

from api.jobs.tasks import register_tasks
from api.settings import Settings, libpq_dsn


def build_job_app(settings: Settings) -> procrastinate.App:
    connector = procrastinate.PsycopgConnector(conninfo=libpq_dsn(settings.app_dsn()))
    app = procrastinate.App(connector=connector)
    register_tasks(app, settings)
    return app
