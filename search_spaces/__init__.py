"""Shipped search spaces (package data): <family>.yaml and <family>/<dataset>.yaml overrides."""
