"""The VKontakte channel: Bots Long Poll, the Callback API, keyboards and sending within VK limits."""
