"""Using a trained model: ``predict`` on photos, videos and audio (``predict``, ``predict_output``,
``annotate``), ONNX ``export`` and ``best:<dataset>/<family>`` references (``model_ref``).

Loads checkpoints through ``fer_models.checkpoint`` / ``bench.training.checkpoint`` and the one
preprocessing path of ``bench.data.transforms``; never imports Ray or ``bench.sweep``.
"""
