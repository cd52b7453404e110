"""Offline preprocessing that fills the cache trials read: faces (detect + align) here; audio and
video preprocessing sit beside it."""
