"""CPN controller."""
