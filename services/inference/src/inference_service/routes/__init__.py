"""The HTTP surfaces, one module each: ``v1`` (the simple JSON API) and ``v2`` (Open Inference Protocol)."""
