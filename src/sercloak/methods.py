"""A method as data: what the device does, its name in results.json and its label.

`Method` is built once from an experiment's configuration and one of its
operating points (`experiment.method_of`) and stored with every results.json
entry as its `spec` (and its `name` as `method`, what entries are matched by):
reports and export rebuild it with `Method.from_dict`, and nothing parses a
method's name back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .settings import from_fields

TRANSFORM_LABELS = {"mcadams": "McAdams (VPC B2)", "pitch_shift": "Pitch shift",
                    "voicenorm": "Voice normalisation"}
DESIGN_LABELS = {"posteriors": "Posteriors only",
                 "embedding": "Split network (embedding)"}
KIND_WORDS = {"saliency": "saliency mask"}  # a cloak qualifier reads as itself otherwise
GAME_WORDS = {"adversarial": "adversarial", "minmax": "min–max"}
# what the posteriors service answers, when not the floor's probabilities: its own name
OUTPUT_LABELS = {"calibrated": "Posteriors calibrated per user",
                 "label": "Label only (f_θ on the device)"}


@dataclass(frozen=True)
class Method:
    design: str = "spectrogram"  # spectrogram, posteriors or embedding
    transform: str | None = None  # the audio's transform before features
    cloak: tuple[str, ...] | None = None  # a cloak's qualifiers (temporal, warp, ...); None: none
    game: str | None = None  # adversarial (the paper's gradient reversal) or minmax
    adapted: bool = False  # the service's emotion model adapted to the protection
    output: str | None = None  # the posteriors service's answer, when not its probabilities
    debiased: bool = False  # the emotion model trained against a gender adversary on its output
    dims: tuple[int, ...] | None = None  # the split network's k grid, when not the default

    @property
    def name(self) -> str:
        """results.json's `method`: cloak_temporal_minmax_adapted, voicenorm, embedding, ..."""
        if self.design != "spectrogram":
            return "_".join([*([self.transform] if self.transform else []), self.design,
                             *([self.game] if self.game else []),
                             *([self.output] if self.output else []),
                             *([f"k{'-'.join(map(str, self.dims))}"] if self.dims else []),
                             *(["debiased"] if self.debiased else [])])
        parts = [self.transform] if self.transform else []
        if self.cloak is not None:
            parts += ["cloak", *self.cloak] + ([self.game] if self.game else [])
        return ("_".join(parts) + ("_adapted" if self.adapted else "")
                + ("_debiased" if self.debiased else ""))

    @property
    def is_floor(self) -> bool:
        """The plain f_θ's window posteriors: what any emotion service's output leaks, drawn
        as the floor rather than as a design."""
        return self == FLOOR

    @property
    def label(self) -> str:
        """How it reads in tables and legends: "Voice normalisation + Cloak (temporal) +
        min–max, adapted"."""
        if self.design != "spectrogram":
            floor = self.is_floor
            return " + ".join([*([TRANSFORM_LABELS[self.transform]] if self.transform else []),
                               OUTPUT_LABELS.get(self.output, DESIGN_LABELS[self.design])
                               + (" (floor)" if floor else "")
                               + (f", {self.game} game" if self.game else "")
                               + (f", k ∈ {{{', '.join(map(str, self.dims))}}}"
                                  if self.dims else "")
                               + (", debiased f_θ" if self.debiased else "")])
        parts = [TRANSFORM_LABELS.get(self.transform, self.transform)] if self.transform else []
        if self.cloak is not None:
            kinds = [KIND_WORDS.get(k, k) for k in self.cloak]
            parts.append("Cloak" + (f" ({', '.join(kinds)})" if kinds else "")
                         + (f" + {GAME_WORDS[self.game]}" if self.game else ""))
        return (" + ".join(parts) + (", adapted" if self.adapted else "")
                + (", debiased f_θ" if self.debiased else ""))

    def to_dict(self) -> dict:
        d = asdict(self)
        return {**d, "cloak": None if self.cloak is None else list(self.cloak),
                "dims": None if self.dims is None else list(self.dims)}

    @classmethod
    def from_dict(cls, spec: dict) -> Method:
        """The method of a results.json entry's `spec`."""
        cloak, dims = spec.get("cloak"), spec.get("dims")
        return from_fields(cls, {**spec, "cloak": None if cloak is None else tuple(cloak),
                                 "dims": None if dims is None else tuple(dims)},
                           "a results.json entry's method")


FLOOR = Method("posteriors")
# the paper's two methods (its Figure 4 draws them against the suppression ratio)
PAPER_METHODS = (Method(cloak=()).name, Method(cloak=(), game="adversarial").name)
