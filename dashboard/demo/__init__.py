"""The demo's stand-ins for the Gooee cloud and a building: an emulator and a simulator.

``emulator`` validates device publishes and fans actions out as the cloud would; ``simulator``
plays the devices and people of one or more buildings; ``inventory`` makes demo buildings.
Imports the public names of ``contract``, ``live`` and ``bridge``; never the web modules.
"""
