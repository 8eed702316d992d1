"""A storage node (``soko-storage``): Swift's object, container and account servers in one process."""
