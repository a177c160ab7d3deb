"""What a service runs besides its doors: background workers."""
