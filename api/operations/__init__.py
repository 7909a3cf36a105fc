"""Long-running tenant operations: a state machine of idempotent steps in the platform DB."""
