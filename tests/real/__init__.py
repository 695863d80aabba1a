"""The real-weights suite (see conftest.py); a package so its conftest does not shadow tests/conftest.py."""
