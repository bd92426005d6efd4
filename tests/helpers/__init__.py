"""Shared test helpers: tiny real-class models, waiting on threads and servers, pixel comparison."""
