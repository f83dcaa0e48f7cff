"""Live state: the building inventory, its tiles and fragments, the store, the channel layer's messages.

Imports `contract` and Django; never `bridge` or the web modules at the package root."""
