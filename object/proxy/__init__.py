"""The Swift API proxy (``soko-proxy``): holds no state but the rings."""
