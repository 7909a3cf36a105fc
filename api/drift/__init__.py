"""Drift as the platform sees it: the watcher's findings in the database (recorder.py, run by
`python -m api.drift`), read through the API (router.py)."""
