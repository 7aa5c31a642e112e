"""The gateway's own endpoints (everything else is proxied)."""
