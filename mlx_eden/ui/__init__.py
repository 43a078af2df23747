"""Presentation: listeners that show the loop's events, and reports. No backend imports."""
