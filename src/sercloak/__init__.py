"""sercloak: privacy-preserving speech emotion recognition.

The package is laid out as the pipeline runs:
corpora -> audio -> features -> folds -> prepare (cache + summary) -> cli.
"""

__version__ = "0.1.0"
