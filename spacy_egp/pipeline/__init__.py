"""The pipeline components and what they share with threshold tuning.

efficient_globalpointer (the component, `GlobalPointerPipe`, the spans scorer),
gplinker (the relation component and its scorer), gold (gold spans and
relations → band cells), decoding (band cells → spans and relations, with the
cap), relations (the `doc._.relations` storage format), nesting (how spans
overlap), thresholds (per-label thresholds tuned on dev data).
"""
