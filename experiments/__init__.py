"""Experiments as data: each `experiments/<id>/experiment.yaml` names the commands that produced its `results/`.

    python -m experiments run ID [--dry-run]   # run its commands into runs/ID/, copy the result files to results/
    python -m experiments tables [--check]     # regenerate every README.md, INDEX.md and README's results block

Superseded experiments live under `experiments/archive/<id>/`, kept because issues cite their numbers.
"""
