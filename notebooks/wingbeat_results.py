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

# a pipeline's --outdir (holding wingbeat/), or its wingbeat/ folder
RESULTS = Path(os.environ.get("INSECTML_RESULTS", "../results"))
# the data it ran on: the recordings the error gallery shows
DATA = Path(os.environ.get("INSECTML_DATA", "../data"))
# a model to look into (features, cnn, gru, transformer, rocket, baseline); None: the chosen one
MODEL = None

# %% [markdown]
# # Wingbeat results
#
# Every model the pipeline trained, scored on the test recordings with 95 % intervals
# (grouped bootstrap: recording events are resampled, not recordings), then one model in
# detail: per-species scores, the confusion matrix, training curves and its most confident
# mistakes. Each evaluation's `report.html` holds the same and more (explanations).

# %%
# %matplotlib inline
from insectml import explore

results = explore.load_results(RESULTS, "wingbeat")
print(results)

# %% [markdown]
# ## Every model
#
# `chosen` is the model the pipeline packaged (selected on validation, not on test).

# %%
explore.metrics_table(results)

# %% [markdown]
# ## One model

# %%
explore.per_class_table(results, MODEL)

# %%
explore.show_confusion(results, MODEL)

# %%
explore.show_history(results)

# %% [markdown]
# ## Its worst errors
#
# The wrong predictions it was most sure of (`confidence` in the predicted species,
# `truth_score` in the true one): the recordings to listen to first.

# %%
predictions = explore.predictions(results, DATA, MODEL)
explore.worst_errors(predictions)

# %%
explore.show_errors(predictions)
