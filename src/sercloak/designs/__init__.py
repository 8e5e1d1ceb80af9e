"""What the device sends, one module per design; each scores its operating points for one
seed and fold (a `runner.FoldRunner`).

- `spectrogram`: log-mel features behind a cloak, a transform of the audio, or both;
- `posteriors`: only f_θ's emotion probabilities of each window (the floor);
- `split`: the front of a split emotion network sends a noisy k-dimensional sequence.
"""
