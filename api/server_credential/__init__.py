"""The tenant server's credential: issue, rotate, authenticate (license fetch and usage reports only)."""
