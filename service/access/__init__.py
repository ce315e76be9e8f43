"""Who may call: API tokens (hashed, revocable, program-scoped) and their roles."""
