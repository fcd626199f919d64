"""TorchServe configuration templates that ``aigis serve start`` fills from settings."""
