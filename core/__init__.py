"""Ticket rules: matching, badges, operations and notification routing, free of protocol code."""
