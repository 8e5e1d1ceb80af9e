"""The `embedding` design: a split emotion network whose device part sends a noisy
k-dimensional sequence, and whose server part recognises the emotion from it.

    device:  log-mel window (200, 128) -> f_θ's standardisation and convolutional
             blocks (frozen) -> per time step a projection to k dimensions, tanh
             -> + σ·ε (σ learned per dimension)      = what is sent: (steps, k)
    server:  bidirectional GRU over the steps -> mean -> two linear layers -> emotion

The front starts from f_θ's trained convolutions and stays frozen, so training
runs on their cached output maps: only the projection, the noise scales and the
server part learn. They learn in a min–max game (issue 10's `minmax`) against
adversaries that read the noisy embedding: an MLP on every time step and a
differentiable utterance-statistics adversary (mean, std, min and max of each
dimension over the window's steps). Per batch every adversary first takes
`adversary_steps` steps on the noisy embeddings, then the network takes one
step on

    CE(emotion) + adversary_weight · Σ CE(ψ(z + σ·ε), uniform) − noise_weight · mean(log σ)

(the last term rewards noise, like the cloak's L_c; the tanh keeps the
embedding's scale from outgrowing it). Afterwards the server part adapts
alone to the noisy embeddings for `adapt_epochs` (the service side of issue
10's adaptation). k is chosen on validation speakers among `dims`.

The attackers read what is sent, every window of an utterance at the 0.5 s
hop (`attacks.sequence`: `lr`, `gbt`, `gru`), fitted on the attacker pool's
embeddings (`draws` noise draws each) and selected on its validation speakers.
They read outputs for speakers the network never trained on: under
``shared``, where the network trains on every non-test speaker, they attack
its *twin*, the same network trained on the primary pool alone (on f_θ
trained on the primary pool alone), fitted on the twin's outputs for the
adversary pool's speakers and scoring the twin's outputs (cross-fitting,
`folds.crossfit_pools`; a k-dimensional embedding is the network's own
coordinates, so an attacker fitted on one network cannot read another's). The
emotion figure is the deployed network's.
"""

