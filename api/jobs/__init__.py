"""The job queue (procrastinate on the platform database) and the worker's tasks."""
