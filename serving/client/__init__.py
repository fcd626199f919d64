"""The worker's side of serving, torch-free: the HTTP client, the management client and the
prediction wire format."""
