"""The exception tree and how validation failures become one sentence naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

from hypereal import errors
from hypereal.api.errors import describe_validation

STATUSES = {
    errors.HyperealError: 500,
    errors.BadRequest: 400,
    errors.ValidationFailed: 400,
    errors.InputFetchFailed: 400,
    errors.NotConfigured: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.UpstreamError: 502,
    errors.UpstreamTimeout: 504,
    errors.Unavailable: 503,
}


@pytest.mark.parametrize(("cls", "status"), STATUSES.items(), ids=lambda v: getattr(v, "__name__", str(v)))
def test_every_class_carries_its_status_and_renders_as_json(cls: type[errors.HyperealError], status: int) -> None:
    error = cls("Something specific", hint="more")
    assert error.status == status
    assert isinstance(error, errors.HyperealError)
    assert error.body() == {"error": "Something specific", "hint": "more"}
    assert cls().body()["error"] == cls.default_message


def test_the_tree_has_the_documented_shape() -> None:
    assert issubclass(errors.ValidationFailed, errors.BadRequest)
    assert issubclass(errors.UnknownModel, errors.NotFound)
    assert issubclass(errors.InputFetchFailed, errors.BadRequest)
    # Not a bad request, and not a 5xx either: clients retry those, and only the operator can fix this.
    assert not issubclass(errors.NotConfigured, errors.BadRequest | errors.Unavailable)
    assert issubclass(errors.UpstreamTimeout, errors.UpstreamError)
    assert not issubclass(errors.Unavailable, errors.UpstreamError)


def test_insufficient_credits_names_required_and_available() -> None:
    error = errors.InsufficientCredits(required=45, available=12.5)
    assert error.status == 402
    assert error.body() == {"error": "Insufficient credits", "required": 45, "available": 12.5}


def test_rate_limited_carries_retry_after_headers() -> None:
    error = errors.RateLimited(limit=20, retry_after=37, reset=1_900_000_000)
    assert error.status == 429
    assert error.body() == {"error": "Rate limit exceeded", "limit": 20, "retry_after": 37}
    assert error.headers() == {
        "Retry-After": "37",
        "X-RateLimit-Limit": "20",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "1900000000",
    }


def test_unknown_model_says_where_to_look() -> None:
    plain = errors.UnknownModel("nope")
    assert plain.status == 404
    assert plain.body() == {
        "error": "Unknown model 'nope'. See GET /api/v1/models for the available models.",
        "model": "nope",
        "field": "model",
    }
    scoped = errors.UnknownModel("nope", "video")
    assert "for video" in scoped.message
    assert "GET /api/v1/models?category=video" in scoped.message


def test_unknown_model_names_the_closest_ids() -> None:
    one = errors.UnknownModel("claude-sonet-4-6", "llm", ["claude-sonnet-4-6"])
    assert "Did you mean 'claude-sonnet-4-6'?" in one.message
    three = errors.UnknownModel("gpt5", "llm", ["gpt-5", "gpt-5.1", "gpt-5.2"])
    assert "Did you mean 'gpt-5', 'gpt-5.1' or 'gpt-5.2'?" in three.message


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: StrictStr
    duration: StrictInt = 5


def validation_errors(data: Any) -> list[Any]:
    with pytest.raises(ValidationError) as caught:
        Request.model_validate(data)
    return list(caught.value.errors())


def test_missing_field_reads_like_the_docs() -> None:
    error = describe_validation(validation_errors({}))
    assert error.status == 400
    assert error.body() == {"error": "Model is required", "field": "model"}


def test_wrong_type_names_the_field() -> None:
    error = describe_validation(validation_errors({"model": "m", "duration": "five"}))
    assert error.body()["field"] == "duration"
    assert error.message.startswith("Invalid value for 'duration':")


def test_unknown_field_names_the_field() -> None:
    error = describe_validation(validation_errors({"model": "m", "colour": "red"}))
    assert error.body()["field"] == "colour"


def test_not_an_object() -> None:
    assert describe_validation(validation_errors([1, 2])).message == "Request body must be a JSON object"


def test_fastapi_locations_are_stripped() -> None:
    fastapi_style = [{"type": "missing", "loc": ("body", "prompt"), "msg": "Field required"}]
    assert describe_validation(fastapi_style).body() == {"error": "Prompt is required", "field": "prompt"}
    query_style = [{"type": "int_parsing", "loc": ("query", "limit"), "msg": "Input should be a valid integer"}]
    assert describe_validation(query_style).body()["field"] == "limit"
    nested = [{"type": "missing", "loc": ("body", "messages", 0, "role"), "msg": "Field required"}]
    assert describe_validation(nested).body()["field"] == "messages.0.role"
    assert describe_validation(nested).message.endswith(" is required")


def test_invalid_json_and_empty_errors() -> None:
    assert describe_validation([{"type": "json_invalid", "loc": ("body", 3)}]).message == (
        "Request body is not valid JSON"
    )
    assert describe_validation([]).status == 400
