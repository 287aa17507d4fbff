"""Secure aggregation, in parts; the public API is :mod:`fedshift.shift.secure`.

- :mod:`~fedshift.shift.secagg.config`: round settings, site-count and headroom checks;
- :mod:`~fedshift.shift.secagg.fixedpoint`: floats <-> ``uint64`` ring elements;
- :mod:`~fedshift.shift.secagg.shamir`: Shamir sharing of 32-byte secrets;
- :mod:`~fedshift.shift.secagg.channel`: X25519, HKDF-SHA256, ChaCha20-Poly1305 and
  ChaCha20 mask streams (wrappers over ``cryptography``);
- :mod:`~fedshift.shift.secagg.messages`: the protocol's messages and their record form;
- :mod:`~fedshift.shift.secagg.site` and :mod:`~fedshift.shift.secagg.aggregator`: the
  two sides of a round.
"""
