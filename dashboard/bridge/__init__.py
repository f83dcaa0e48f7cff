"""The MQTT bridge: one broker session per building, ingest, fan-out to the channel layer, history.

Imports ``contract`` and ``live`` (and Django's ORM through ``live.store``); never the web modules.
"""
