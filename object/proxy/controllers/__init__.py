"""One controller per Swift resource: account, container, object (``obj``), as in Swift."""
