"""Collatz chains, written plainly."""
