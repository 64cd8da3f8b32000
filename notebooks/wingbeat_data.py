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

# the data folder (holding wingbeat/, or wingbeat/ itself)
DATA = Path(os.environ.get("INSECTML_DATA", "../data"))
# a pipeline's --outdir: when it holds wingbeat/data/, its validation and split are shown
RESULTS = Path(os.environ.get("INSECTML_RESULTS", "../results"))

# %% [markdown]
# # Wingbeat data
#
# What the wingbeat models learn from: recordings per species, the split (grouped by
# recording event, so that no event is on both sides), examples of each species as waveform
# and log-mel spectrogram, and what validation found. The split is the pipeline's when
# `RESULTS` holds a run of it; otherwise the data is validated here with the default
# settings, exactly as the pipeline's validate step would.

# %%
# %matplotlib inline
from insectml import explore

view = explore.load_data("wingbeat", DATA, RESULTS)
print(view)

# %% [markdown]
# ## The split
#
# Recordings, species and recording events per split. "groups shared with another split"
# must be 0: a recording event on both sides would let the test score flatter the model.

# %%
explore.split_summary(view.rows)

# %%
explore.class_counts(view.rows)

# %% [markdown]
# Recording events per species and split: a species with few events outside test is
# scored on very few independent recordings.

# %%
explore.group_counts(view.rows)

# %%
explore.show_split(view.rows)

# %% [markdown]
# ## Examples
#
# Two recordings of each species: the waveform, and the log-mel spectrogram the networks
# see (the wingbeat fundamental and its harmonics are the horizontal lines).

# %%
explore.show_examples(view, per_class=2)

# %% [markdown]
# ## What validation found
#
# Problems stop the pipeline (every one is listed); warnings were repaired (duplicates
# grouped together so that they fall on one side of the split) or are worth a look.

# %%
explore.findings(view.report)

# %%
pairs = explore.duplicate_pairs(view.report)
pairs

# %%
explore.show_pairs(view, pairs)
