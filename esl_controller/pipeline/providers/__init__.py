"""Provider implementations, one module per vendor and capability."""
