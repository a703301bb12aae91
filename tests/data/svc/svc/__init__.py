"""A stateless genome for the live service's tests."""
