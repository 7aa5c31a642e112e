"""modelgate gateway service."""
