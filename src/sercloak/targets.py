"""The thresholds a method is judged by, in one place: what an operating point may cost,
and the targets the comparisons were set (their issues name them)."""

# an operating point chosen on validation speakers may cost at most this many points of
# speaker-balanced emotion UAR (`results.choose_per_fold`)
MAX_EMOTION_DROP = 2.0
# the deployable target (issues 18 and 30, drawn on the Pareto figure): a design a bundle
# ships (`serving.export.exportable`) whose privacy figure is at most this (or
# indistinguishable from chance) within this many points of emotion, and whose user-level
# figure is at most DEPLOYABLE_USER_LEVEL
DEPLOYABLE_GENDER, DEPLOYABLE_DROP = 60.0, 1.0
# a p-value at least this: the privacy figure is indistinguishable from chance
CHANCE_ALPHA = 0.05
# the user-level figure reported beside the privacy figure: an attacker pooling this many of
# a user's requests (issue 30's target: at most 70% after 20)
USER_LEVEL_REQUESTS, DEPLOYABLE_USER_LEVEL = 20, 70.0
