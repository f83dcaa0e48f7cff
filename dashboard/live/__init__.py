"""Live state: the inventory (file and import), tiles and fragments, the store, the channel layer's messages.

Imports `contract`, Django and `dashboard.models`; never `bridge`, `demo` or the other web modules."""
