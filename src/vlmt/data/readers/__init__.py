"""Readers for the official dataset formats; each parses one format into the typed examples of
`vlmt.data.examples`. Every reader takes an optional `report` callback: by default the first
problem raises `DataError`; `vlmt data validate` passes a collector to gather them all."""
