"""Test-only helpers: example bodies, write load, a misbehaving app."""
