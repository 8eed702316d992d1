"""Shared plumbing for every soko service: typed TOML config, the falcon app factory and its middleware, auth, DB sessions, durable writes, process helpers and logging."""
