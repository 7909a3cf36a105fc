"""``python -m api``: serve the control plane (refuses to start on an unmigrated database)."""

from api.app import main

main()
