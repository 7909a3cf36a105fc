"""The procrastinate app of the workers."""

from __future__ import annotations

import procrastinate

from api.jobs.tasks import register_tasks
from api.settings import Settings, libpq_dsn


def build_job_app(settings: Settings, *, periodic: bool = True) -> procrastinate.App:
    # kwargs={}: psycopg-pool 3.3 keeps `kwargs=None` as None, and procrastinate 3.5 opens its
    # LISTEN connection with `**pool.kwargs`; without a mapping the listener task dies at
    # start (silently) and workers only see new jobs by polling, every 5 s.
    connector = procrastinate.PsycopgConnector(conninfo=libpq_dsn(settings.app_dsn()), kwargs={})
    app = procrastinate.App(connector=connector)
    register_tasks(app, settings, periodic=periodic)
    return app
