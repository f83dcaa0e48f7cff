"""The Gooee dashboard, a Django app: models, pages, forms and consumers at this level.

Layers beneath: ``contract`` (the broker's rules) ← ``live`` (state, tiles, store) ← ``bridge``
(MQTT sessions); the web modules here import ``contract`` and ``live``, never ``bridge``.
"""
