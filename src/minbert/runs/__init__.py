"""Runs and experiments: a run directory and its lifecycle (train, resume, evaluate, outputs, report), ablations
over variants and seeds, ensembles of runs, and the teacher outputs distillation reads. This layer sits above
training/ (the loop and its units), the predictor and reporting/, and calls them; nothing below imports it."""
