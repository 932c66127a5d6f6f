"""The bundle format: save, load, manifest, environment capture, integrity."""
