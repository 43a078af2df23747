"""Presentation: listeners that show the loop's events, reports, and the memory plan's tables
(memoryplan.py renders what memory/ computes). No backend imports."""
