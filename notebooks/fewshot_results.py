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

# a pipeline's --outdir (holding fewshot/), or its fewshot/ folder
RESULTS = Path(os.environ.get("INSECTML_RESULTS", "../results"))
# the data it ran on: the images shown
DATA = Path(os.environ.get("INSECTML_DATA", "../data"))

# %% [markdown]
# # Few-shot results
#
# The embedder on novel test classes it never saw: nearest-prototype top-1/top-5, 5-way
# episodes with 95 % intervals, open-set AUROC, beside two baselines scored on the same
# episodes; then its errors, class by class and image by image, and the map of the
# embeddings.

# %%
# %matplotlib inline
from insectml import explore

results = explore.load_results(RESULTS, "fewshot")
print(results)

# %% [markdown]
# ## The model and its baselines

# %%
explore.metrics_table(results)

# %%
explore.show_history(results)

# %% [markdown]
# ## Its errors
#
# The test classes' queries, embedded now and classified by their nearest prototype (made
# from the support images), as the evaluation does.

# %%
predictions = explore.predictions(results, DATA)
explore.show_confusion(results, predictions=predictions)

# %%
explore.worst_errors(predictions)

# %%
explore.show_errors(predictions, n=6)

# %% [markdown]
# ## The embeddings
#
# Queries as dots and prototypes as stars, one colour per class; the misclassified queries
# are circled. A query far from its star, or two stars close together, is where the model
# struggles.

# %%
explore.show_embedding_map(predictions)
