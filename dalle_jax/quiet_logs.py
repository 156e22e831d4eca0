"""Log filters for third-party notices that need no action from a user."""

import logging


class DropMessages(logging.Filter):
  """Drops log records whose message contains `text`.

  Added to a logger (`logging.getLogger(name).addFilter(...)`), it drops
  only the records logged through that logger, not its children's.
  """

  def __init__(self, text: str):
    super().__init__()
    self.text = text

  def filter(self, record: logging.LogRecord) -> bool:
    return self.text not in record.getMessage()
