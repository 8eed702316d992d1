"""The image service (``soko-image``, Glance-shaped): image records, bytes in the object store."""
