"""Pretrained weights brought in offline: ``insectml weights import`` and the lookup every
``--*_weights`` param goes through (:mod:`insectml.weights.store`)."""
