"""Data: labelled tasks for `tune` (tasks.py, readers.py) and corpora for `adapt`."""
