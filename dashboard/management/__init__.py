"""The manage.py commands: import inventory, grant roles, run the bridge, serve, demo, simulate, prune.

May import anything of the dashboard: a command wires the layers together for one process."""
