"""The country model: tax-benefit systems, households, policies and worker functions."""
