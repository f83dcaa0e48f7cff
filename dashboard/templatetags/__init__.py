"""Template tags: ``{% tile %}`` renders a live fragment in a page, as the bridge's pushes do.

A web module: imports ``contract`` and ``live``, never ``bridge`` or ``demo``."""
