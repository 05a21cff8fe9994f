"""`python -m emulators.vk`: serve the fake VK server until interrupted."""

from emulators.vk.server import main

main()
