"""The engine and the image, shared by every module of tests/docker (one build per session)."""

from tests.docker.engine import base_image, engine, image

__all__ = ["base_image", "engine", "image"]
