"""The Mailer port's contract: what is sent arrives unchanged, Russian text included.

The `mail_backend` fixture (conftest.py) gives a mailer and a way to read what its far side
received: a real SMTP server on loopback, a memory list, a terminal stream.
"""

from __future__ import annotations

from typing import Any

from engine.ports import MailMessage

CODE_MAIL = MailMessage(
    to="ivanov-ii@ranepa.ru",
    subject="Код для входа в бот поддержки: 482913",
    body="Здравствуйте!\n\nВаш код — 482913. Он действует 10 минут.\nЕсли это были не вы, ничего не делайте.",
)


async def test_message_arrives_unchanged(mail_backend: Any) -> None:
    await mail_backend.mailer.send(CODE_MAIL)
    assert mail_backend.received() == [CODE_MAIL]


async def test_messages_arrive_in_order(mail_backend: Any) -> None:
    sent = [MailMessage(f"user{i}@ranepa.ru", f"Тема {i}", f"Текст письма {i}") for i in range(3)]
    for message in sent:
        await mail_backend.mailer.send(message)
    assert mail_backend.received() == sent


async def test_long_lines_survive(mail_backend: Any) -> None:
    # SMTP limits lines to 998 bytes; the mailer must encode, not cut or refuse.
    message = MailMessage("a@ranepa.ru", "Длинное письмо " * 12, "ю" * 3000 + "\n" + "end")
    await mail_backend.mailer.send(message)
    assert mail_backend.received() == [message]
