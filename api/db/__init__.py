"""Platform database: models, sessions with row-level-security scope, migration state."""
