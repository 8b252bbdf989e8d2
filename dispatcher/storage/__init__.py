"""Persistence: tables, engine set-up, encrypted secrets and queries."""
