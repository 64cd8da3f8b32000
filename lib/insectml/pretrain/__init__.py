"""Self-supervised pretraining of image backbones (``--task pretrain``, ``insectml pretrain``)."""
