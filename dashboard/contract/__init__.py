"""The broker contract: topics, payload rules (JSON Schemas), the cloud's meta definitions and refusals.

Plain Python with no Django and nothing else of the dashboard: anything may import it."""
