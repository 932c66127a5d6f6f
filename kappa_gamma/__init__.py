"""Gamma: the team registry server (REST API and web UI over the repository) and its client.

Clients hold a URL and a token (``gamma_service.url``, ``gamma_service.token``) instead of
the database password and object-store keys.
"""
