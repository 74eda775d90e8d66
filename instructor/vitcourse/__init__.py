"""Tooling for the people who run the series: executing notebooks reproducibly, student versions, grading."""
