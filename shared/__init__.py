"""Code both the edge agent and the hub use: errors, model runtimes, and (later) the wire protocol."""
