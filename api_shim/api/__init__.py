"""The seed's documented import path: ``from api.example_client import LaxAIClient``."""
