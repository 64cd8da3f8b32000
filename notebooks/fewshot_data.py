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

# the data folder (holding fewshot/, or fewshot/ itself)
DATA = Path(os.environ.get("INSECTML_DATA", "../data"))
# a pipeline's --outdir: when it holds fewshot/data/, its validation and split are shown
RESULTS = Path(os.environ.get("INSECTML_RESULTS", "../results"))

# %% [markdown]
# # Few-shot data
#
# Many similar classes with a few images each. The split is by class: the embedder trains
# on the base classes (`train`) and is scored on novel classes it never saw (`val`, `test`),
# whose images are cut into support images (they make each class's prototype) and queries
# (classified by their nearest prototype). The split is the pipeline's when `RESULTS` holds
# a run of it; otherwise the data is validated here with the default settings.

# %%
# %matplotlib inline
from insectml import explore

view = explore.load_data("fewshot", DATA, RESULTS)
print(view)

# %% [markdown]
# ## The split
#
# Images and classes per split, and the support/query cut of the novel classes.

# %%
explore.split_summary(view.rows)

# %%
explore.show_split(view.rows)

# %% [markdown]
# The classes with the most images:

# %%
explore.class_counts(view.rows).head(15)

# %% [markdown]
# ## An episode
#
# A 5-way episode of the test classes as the evaluation builds them: each row a class, its
# support images, then its queries.

# %%
explore.show_episode(view, split="test", n_way=5)

# %% [markdown]
# ## What validation found
#
# Problems stop the pipeline; near-duplicates within a class were grouped (so that they fall
# on one side of the support/query cut); near-duplicates across classes are worth a look:
# two classes may be one.

# %%
explore.findings(view.report)

# %%
pairs = explore.duplicate_pairs(view.report)
pairs

# %%
explore.show_pairs(view, pairs)
