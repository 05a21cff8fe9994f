"""`python -m emulators.simpleone`: serve the SimpleOne emulator until interrupted."""

from emulators.simpleone.server import main

main()
