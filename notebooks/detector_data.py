# ---
# jupyter:
#   kernelspec:
#     display_name: insectml (project env)
#     language: python
#     name: insectml
# ---

# %% tags=["parameters"]
import os
from pathlib import Path

# the data folder (holding detector/, or detector/ itself)
DATA = Path(os.environ.get("INSECTML_DATA", "../data"))
# a pipeline's --outdir: when it holds detector/data/, its validation and split are shown
RESULTS = Path(os.environ.get("INSECTML_RESULTS", "../results"))

# %% [markdown]
# # Detector data
#
# What the detectors learn from: box-labelled images (split into train, val and test,
# grouped by scene) and species-labelled images without boxes (`unlabelled`: the generic
# detector gives them boxes, the pseudo-labels, before the target-species detector trains).
# The split is the pipeline's when `RESULTS` holds a run of it; otherwise the data is
# validated here with the default settings, as the pipeline's validate step would.

# %%
# %matplotlib inline
from insectml import explore

view = explore.load_data("detector", DATA, RESULTS)
print(view)

# %% [markdown]
# ## The split
#
# Images, classes and groups per split ("groups shared with another split" must be 0),
# then boxes per class; species-labelled images count under their species.

# %%
explore.split_summary(view.rows)

# %%
explore.class_counts(view.rows)

# %%
explore.group_counts(view.rows)

# %%
explore.show_split(view.rows)

# %% [markdown]
# ## Examples
#
# Images of each class with their true boxes, and species-labelled images (no boxes yet).

# %%
explore.show_examples(view, per_class=2)

# %% [markdown]
# ## What validation found
#
# Problems stop the pipeline; warnings were repaired (boxes clipped to the image,
# duplicates grouped so that they fall on one side of the split) or are worth a look.

# %%
explore.findings(view.report)

# %%
pairs = explore.duplicate_pairs(view.report)
pairs

# %%
explore.show_pairs(view, pairs)
