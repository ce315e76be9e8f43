"""The one composition root: every component of a process, built from the settings."""
