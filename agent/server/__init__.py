"""Serving agents over HTTP."""
