"""The matching layer: ``Matcher`` (preprocess -> backend -> steps -> map back -> ``MatchResult``).

Imports from ``backends`` and the shared top-level modules only; never from ``ros`` or ``tools``.
"""
