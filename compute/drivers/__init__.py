"""Hypervisor drivers behind the ``Hypervisor`` protocol in ``base``: one module per backend."""
