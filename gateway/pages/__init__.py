"""Buyer pages: the chooser, the thank-you/status page and lost-key recovery.

Jinja2 templates and static files live beside the modules that render them.
"""
