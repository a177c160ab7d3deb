"""The `leadflow` command and the composition root: it starts and wires the services."""
