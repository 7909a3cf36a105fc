"""Billing on Stripe: the catalog's products and prices, subscriptions that gate
provisioning, webhooks that suspend and reactivate, and usage metering."""
