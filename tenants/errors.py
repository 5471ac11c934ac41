"""The one business error type. Every refusal raises it with a stable code and the message the user
sees (the spec's exact words where it has them). Pages show `message`; the API answers
`{"error": {"code": ..., "message": ...}}` with `status`."""


class BusinessError(Exception):
    status = 400

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status

    def as_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}
