"""Serving: what leaves the experiment folders for a real device and service.

- `client`: audio -> log-mel -> per-user normalisation -> cloak, with NumPy
  and soundfile only (no torch), for whole utterances and as a stream.
"""
