"""Authentication (argon2 passwords, Ed25519 access tokens) and role-based authorization."""
