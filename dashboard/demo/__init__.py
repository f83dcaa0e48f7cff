"""The demo's stand-ins for the Gooee cloud (``emulator``) and a building's devices and people (``simulator``).

Imports the public names of ``contract``, ``live`` and ``bridge``; never the web modules."""
