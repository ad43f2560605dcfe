"""The commands that train: `tune` (tune.py) and `adapt` (adapt.py), on one run skeleton (base.py)."""
