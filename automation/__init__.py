"""The Automation API layer: how the control plane and the `cameleer` CLI drive stacks.

One module, one job:

| module        | job                                                                   |
|---------------|-----------------------------------------------------------------------|
| settings.py   | where things are (project, data dir, backend, passphrase, CLI), from the environment |
| workspace.py  | the one factory of LocalWorkspaces: backend, secrets provider, engine env, config encoding |
| transit.py    | a transit key per service stack (OpenBao/Vault): the secrets provider, crypto-shredding |
| engine.py     | engine commands with one CLI process each (no select/history round trips) |
| naming.py     | `tenant-<slug>`, `dedicated-<slug>`, `shared-<cluster>`; slug -> stack   |
| operations.py | preview, up/provision, refresh, drift check/correction, destroy, history, export/import |
| events.py     | engine events captured as timestamped `OperationEvent`s for `on_event` |
| changes.py    | step events -> per-URN op and changed property paths (with values)    |
| errors.py     | failures classified: config, not_found, policy, conflict, transient, unknown |
| locks.py      | in-process gate (N at once, one per stack); backend lock staleness    |
| recovery.py   | stale lock + pending operations of a dead process: cleared, reported  |
| history.py    | who/why written into each update, parsed back from stack history      |
| drift.py      | the multi-stack drift job and its exit codes                          |
| tenants.py    | the control plane's tenant spec -> a tenant stack's config            |
| cli.py        | `cameleer` (Typer + Rich); JSON documents in SCHEMA.md                 |
| render.py     | the CLI's human renderings                                            |

Importing this package loads nothing heavy; import the module you need.
"""
