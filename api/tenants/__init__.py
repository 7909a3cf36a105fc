"""Tenants: signup, lifecycle requests, history."""
