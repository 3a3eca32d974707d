"""The one error type the chat answers with: a machine-readable code and a human message."""


class ChatError(Exception):
    """A refusal the client is told about; the connection stays up."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message

    def as_dict(self):
        """The shape sent to clients in ``error`` events and failed acks."""
        return {"code": self.code, "message": self.message}
