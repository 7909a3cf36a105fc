"""The cluster registry: the clusters tenants are placed on, their capacity, state and credentials."""
