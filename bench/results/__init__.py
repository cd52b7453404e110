"""The results store: the typed, versioned ``Record`` (``record``) and its append-only JSON-lines
file with the one "best record" query (``store``).

The bottom of ``bench`` beside ``data``: imports only ``bench.errors``, so every layer above
(training, sweep, reports, inference, the CLI) may read and write records.
"""
