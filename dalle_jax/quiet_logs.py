"""Log filters for third-party notices that need no action from a user."""

import logging


class DropMessages(logging.Filter):
  """Drops log records whose message contains any of `texts`.

  Added to a logger (`logging.getLogger(name).addFilter(...)`), it drops
  only the records logged through that logger, not its children's.
  """

  def __init__(self, *texts: str):
    super().__init__()
    self.texts = texts

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(text in message for text in self.texts)
