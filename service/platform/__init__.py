"""What every part of the service stands on: settings, logging, metrics, background tasks."""
