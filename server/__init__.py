"""Strongroom: an on-premises CRM server."""

__version__ = "0.1.0"
