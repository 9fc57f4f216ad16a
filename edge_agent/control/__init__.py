"""The agent's side of the control plane: heartbeats to the hub's device registry."""
