"""Dataset specs: the pydantic model and the specs shipped with the platform."""
