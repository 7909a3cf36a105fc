"""Billing: the gateway Protocol the operations call, and a local implementation."""
