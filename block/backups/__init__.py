"""Volume backups to the object store: chunked, compressed, content-addressed, incremental."""
