"""Counts common words and summarises them."""
