"""The losses and miners by name: kept free of torch, so that building the CLI's parser
(every ``insectml`` call, twice in each pipeline task) does not import it."""

LOSSES = ("proto", "supcon", "arcface", "cosface")
MINERS = ("none", "multisimilarity")
