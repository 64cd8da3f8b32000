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

# a pipeline's --outdir (holding detector/), or its detector/ folder
RESULTS = Path(os.environ.get("INSECTML_RESULTS", "../results"))
# the data it ran on: the images shown
DATA = Path(os.environ.get("INSECTML_DATA", "../data"))
# the detector to look into: generic or target; None: target when it was trained
MODEL = None

# %% [markdown]
# # Detector results
#
# The generic insect detector and the target-species detector trained on its
# pseudo-labels, scored on the test images (COCO mAP with 95 % bootstrap intervals over
# images), then one detector in detail and the pseudo-labels a person should review.

# %%
# %matplotlib inline
from insectml import explore

results = explore.load_results(RESULTS, "detector")
print(results)

# %% [markdown]
# ## Both detectors

# %%
explore.metrics_table(results)

# %% [markdown]
# ## One detector
#
# AP per class (worst first) and the confusion matrix at IoU 0.5: the background row counts
# false alarms, the background column missed insects.

# %%
explore.per_class_table(results, MODEL)

# %%
explore.show_confusion(results, MODEL)

# %%
explore.show_history(results)

# %% [markdown]
# ## Its worst images
#
# The test images run through the served detector's code; per image the true boxes found
# with the right class, with the wrong one, missed, and the false alarms (score ≥ 0.5).

# %%
detections = explore.predictions(results, DATA, MODEL)
explore.worst_errors(detections)

# %%
explore.show_errors(detections)

# %% [markdown]
# ## Pseudo-labels to review
#
# The boxes the generic detector gave the species-labelled images, least sure first. They
# are also written as a Supervisely project (`pseudo/pseudo_sly/`) to correct in the
# labelling tool.

# %%
explore.pseudo_summary(results)

# %%
explore.pseudo_labels(results).head(12)

# %%
explore.show_pseudo_labels(results, DATA)
