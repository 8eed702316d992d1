"""The S3 API (``layer.S3Layer`` in front of the Swift proxy app): SigV4, buckets, objects."""
