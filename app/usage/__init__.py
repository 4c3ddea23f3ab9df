"""Stored bytes per tenant (GET /v1/usage) and the storage quota."""
