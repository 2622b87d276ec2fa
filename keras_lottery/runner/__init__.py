"""The experiment runner: the lottery search, training, run directories, reporting, CLI."""
