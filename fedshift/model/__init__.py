"""A site's segmentation model: network (g/f split), preprocessing, training, metrics.

Modules (import from them directly; this package imports nothing, so reading a config
does not load torch and MONAI):

- :mod:`~fedshift.model.config`: ``SegConfig`` = model / preprocess / augment / train / eval.
- :mod:`~fedshift.model.network`: ``SegNet`` (``.g`` features, ``.f`` head),
  ``build_network``, ``get_weights`` / ``set_weights``, ``get_state`` / ``set_state``.
- :mod:`~fedshift.model.preprocess`: N4, brain mask, z-score; ``PreprocessCache``,
  ``PreprocessVolumed``.
- :mod:`~fedshift.model.data`: transforms, datasets, seeded loaders, ``split_train_val``.
- :mod:`~fedshift.model.trainer`: ``SiteTrainer`` (train / evaluate / tune_threshold /
  get_weights / set_weights / state / load_state), ``TrainResult``.
- :mod:`~fedshift.model.schedule`: ``round_lr``, the learning rate of a round (warm-up,
  cosine).
- :mod:`~fedshift.model.evaluate`: sliding-window inference, per-case metrics.
- :mod:`~fedshift.model.metrics`: Dice (MONAI), lesion-wise detection, volume difference.
- :mod:`~fedshift.model.device`: ``choose_device``, AMP helpers.
"""
