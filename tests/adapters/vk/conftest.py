"""Fixtures for the VK channel's tests: the fake VK server on loopback."""

from tests.vk_fixtures import make_vk, vk

__all__ = ["make_vk", "vk"]
