"""The checks of each lab, one module per lab; each verifies the work against the cluster."""
