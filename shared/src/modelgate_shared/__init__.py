"""Code shared by the modelgate services; each piece lives here once."""
