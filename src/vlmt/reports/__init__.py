"""What a run is shown as: report.md / report.html with tables and training curves, attention
pictures, SVLR's figures, and prediction files in the official formats."""
