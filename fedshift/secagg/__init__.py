"""Secure aggregation, in parts; the public API is :mod:`fedshift.secagg.secure`.

- :mod:`~fedshift.secagg.config`: round settings, site-count and headroom checks;
- :mod:`~fedshift.secagg.fixedpoint`: floats <-> ``uint64`` ring elements;
- :mod:`~fedshift.secagg.shamir`: Shamir sharing of 32-byte secrets;
- :mod:`~fedshift.secagg.channel`: X25519, HKDF-SHA256, ChaCha20-Poly1305 and
  ChaCha20 mask streams (wrappers over ``cryptography``);
- :mod:`~fedshift.secagg.messages`: the protocol's messages and their record form;
- :mod:`~fedshift.secagg.site` and :mod:`~fedshift.secagg.aggregator`: the
  two sides of a round.
"""
