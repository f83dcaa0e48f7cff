"""The MQTT bridge: broker sessions per building → live state → channel layer."""
