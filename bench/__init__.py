"""fer-bench: sweep the fer_models zoo with Ray Tune and report honest leaderboards."""

__version__ = "0.1.0"
