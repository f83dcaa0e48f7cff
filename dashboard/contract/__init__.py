"""The broker contract: topics, payload rules (JSON Schemas) and the cloud's meta definitions.

Plain Python with no Django and nothing else of the dashboard: anything may import it."""
