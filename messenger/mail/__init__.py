"""Email (API_CONTRACT.md §10): composing messages, the outbox's mailer and its transports,
verification and password-reset flows, missed-message digests.

* ``compose``: every email is an ``email.message.EmailMessage`` built with ``policy=default``.
* ``service.EmailService``: tokens, verification, password reset; puts mail in the outbox.
* ``mailer.Mailer``: claims due mail from the outbox and sends it (SMTP or log mode) with
  retries and backoff.
* ``digest.DigestWorker``: finds offline users with unread messages and queues their digest.

The mailer and the digest worker run as actors (``actors/mail.py``), started by ``Services``.
"""
