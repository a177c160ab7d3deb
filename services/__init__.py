"""The leadflow services and the `leadflow` command that composes them."""
