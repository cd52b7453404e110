"""Shipped search spaces (package data): <modality>.yaml and <modality>/<dataset>.yaml overrides."""
