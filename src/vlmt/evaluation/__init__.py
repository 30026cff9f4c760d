"""Evaluation: official metrics, reports and visualisation."""
