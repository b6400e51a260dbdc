"""HTML reports of runs and comparisons (minbert report)."""
