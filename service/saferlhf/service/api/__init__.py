"""The gRPC layer: the only place that touches generated proto types (STYLE rule 1)."""
