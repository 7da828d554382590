"""The native API's bodies as the OpenAPI document describes them: errors, accounts, models, media, jobs.

These models document; they do not build the answers (the endpoints write plain dicts, the
cheapest thing to serialise). The schemathesis run in the test suite checks every answer the
server gives against them, so a field added to an answer without its model fails a test.

Rules they follow:
- A field every answer carries is required (nullable where it can be null); a field only
  some answers carry has a default and is not.
- Answers may grow: no model forbids fields it does not list.
- Request bodies list what the endpoints read, with the bounds the endpoints enforce; a
  model's own parameters are checked against the catalog (`GET /api/v1/models/{id}`
  lists each one's type, enum and bounds).
- Examples are the seed documentation's, where it has one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Credits = float
"""Credits as shown outside: whole numbers, or fractions with up to three decimals (chat)."""


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(examples)})


# ---------------------------------------------------------------- errors


class Error(BaseModel):
    """Every error of the native API: a sentence, plus fields that depend on the error."""

    model_config = _examples(
        {"error": "Unauthorized. Please provide a valid API key (Authorization: Bearer ck_... or x-api-key)."},
        {"error": "Model is required", "field": "model"},
        {"error": "Insufficient credits", "required": 69, "available": 10},
        {"error": "Job not found"},
    )

    error: str = Field(description="What went wrong, in one sentence.")
    field: str | None = Field(default=None, description="The request field at fault (400).")
    required: Credits | None = Field(default=None, description="Credits the request needs (402).")
    available: Credits | None = Field(default=None, description="Credits the account has (402).")
    limit: int | None = Field(default=None, description="Requests per hour of the key (429), or body bytes (413).")
    retry_after: int | None = Field(default=None, description="Seconds until a request is allowed again (429).")
    jobId: str | None = Field(default=None, description="The job that failed (a synchronous generation).")
    refunded: bool | None = Field(default=None, description="The failed job's credits went back to the account.")


# ---------------------------------------------------------------- accounts and keys


class AccountSummary(BaseModel):
    model_config = _examples({"id": "acc_5f0c1d2e3a4b5c6d", "name": "Acme", "balance": 1000})

    id: str
    name: str
    balance: Credits


class Account(AccountSummary):
    model_config = _examples({"id": "acc_5f0c1d2e3a4b5c6d", "name": "Acme", "balance": 1000, "createdAt": 1766841456.0})

    createdAt: float = Field(description="Unix time, seconds.")


class AccountList(BaseModel):
    data: list[Account]


class Balance(BaseModel):
    model_config = _examples({"balance": 1200})

    balance: Credits


class ProviderPreferences(BaseModel):
    """Which providers serve a request, as OpenRouter's users write it (`hypereal.routing.preferences`).

    Names are the catalog's provider entries (a model's `routes` name them); a name the
    catalog does not know, or preferences that leave a model no provider, are a 400.
    """

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"order": ["anthropic"], "allow_fallbacks": False}]}
    )

    order: list[str] | None = Field(default=None, max_length=32, description="Providers to try first, in this order.")
    only: list[str] | None = Field(default=None, max_length=32, description="No provider but these.")
    ignore: list[str] | None = Field(default=None, max_length=32, description="Never these providers.")
    allow_fallbacks: bool = Field(
        default=True, description="False: no provider beyond those in `order` (without one: beyond the first)."
    )
    sort: Literal["price", "latency"] | None = Field(
        default=None, description="Cheapest first, or fastest to answer lately."
    )


PROVIDER_DESCRIPTION = "Provider preferences for this request; they replace the key's default and are never forwarded."


class Key(BaseModel):
    """An API key, without its secret."""

    id: str
    accountId: str
    name: str
    prefix: str = Field(description="The first characters of the key, to recognise it by.")
    rate_limit_per_hour: int | None = Field(description="None: the server's default limit.")
    createdAt: float
    lastUsedAt: float | None
    revokedAt: float | None
    provider: ProviderPreferences | None = Field(default=None, description="The key's default provider preferences.")


class KeyList(BaseModel):
    data: list[Key]


class CreatedKey(BaseModel):
    """A new key; `key` is shown this once and stored only as a hash."""

    model_config = _examples(
        {
            "id": "key_0a1b2c3d4e5f6a7b",
            "key": "ck_YOUR_API_KEY",
            "prefix": "ck_YOUR_AP",
            "name": "default",
            "rate_limit_per_hour": 1000,
        }
    )

    id: str
    key: str
    prefix: str
    name: str
    rate_limit_per_hour: int


class WebhookSecret(BaseModel):
    model_config = _examples({"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})

    secret: str = Field(description="Standard Webhooks secret: `whsec_` and the base64 of the HMAC key.")


class LedgerEntry(BaseModel):
    id: int = Field(ge=1)
    kind: Literal["charge", "refund", "settle", "topup", "adjustment"]
    amount: Credits = Field(description="Negative for a charge.")
    balanceAfter: Credits
    reference: str = Field(description="The job, chat call or top-up the movement belongs to.")
    note: str | None
    createdAt: float


class LedgerPage(BaseModel):
    data: list[LedgerEntry]
    has_more: bool
    next_cursor: int | None = Field(description="Pass as `before` for the next page.")


# ---------------------------------------------------------------- models


class ModelParam(BaseModel):
    type: Literal["string", "integer", "number", "boolean", "image", "images", "audio", "array", "object"]
    required: bool = False
    default: Any = None
    enum: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    max_items: int | None = None
    description: str | None = None


class Pricing(BaseModel):
    """Credits (1 credit = $0.01); only the prices a model has are listed."""

    per_call: int | None = None
    per_second: int | None = None
    per_input_minute: int | None = None
    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    cached_input_per_mtok: float | None = None
    fast_surcharge_percent: int | None = None


class Model(BaseModel):
    model_config = _examples(
        {
            "id": "local-echo",
            "object": "model",
            "created": 0,
            "owned_by": "local-echo",
            "name": "Local Echo",
            "category": "llm",
            "task": None,
            "description": "Deterministic test chat model that echoes the last user message back.",
            "pricing": {"input_per_mtok": 10.0, "output_per_mtok": 10.0},
            "available": True,
            "context_window": 32768,
            "max_output_tokens": 4096,
        }
    )

    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    name: str
    category: Literal["llm", "image", "image-edit", "video", "audio", "3d"]
    task: str | None
    description: str
    aliases: list[str] = Field(default_factory=list, description="Other ids that name the model (dated ids).")
    pricing: Pricing
    available: bool = Field(description="A configured provider can serve the model now.")
    context_window: int | None = Field(default=None, description="Chat models.")
    max_output_tokens: int | None = Field(default=None, description="Chat models.")
    params: dict[str, ModelParam] | None = Field(default=None, description="Media models: what `input` takes.")


class ModelFamily(BaseModel):
    """Chat model ids the catalog does not list that still reach their vendor, at these prices."""

    pattern: str = Field(description="A shell-style pattern of ids, e.g. `claude-*`.")
    owned_by: str
    description: str
    pricing: Pricing
    context_window: int | None
    max_output_tokens: int | None


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]
    families: list[ModelFamily] | None = Field(default=None, description="With the chat models.")


class AnthropicModel(BaseModel):
    """A chat model as Anthropic's Models API gives it, to clients that send `anthropic-version`."""

    type: Literal["model"]
    id: str
    display_name: str
    created_at: str
    max_input_tokens: int | None = None
    max_tokens: int | None = None
    lifecycle: str | None = None


class AnthropicModelPage(BaseModel):
    """The chat models as Anthropic's Models API lists them, a page at a time."""

    data: list[AnthropicModel]
    has_more: bool
    first_id: str | None
    last_id: str | None


class CodexModelList(BaseModel):
    """The chat models as Codex CLI reads model metadata (`?client_version=`): each entry is
    Codex's `ModelInfo` (`slug`, `display_name`, `context_window`, `base_instructions`, …)."""

    models: list[dict[str, Any]]


# ---------------------------------------------------------------- media requests

Mode = Literal["auto", "fast"]
MODE_DESCRIPTION = (
    "`auto` (default) selects the best provider; `fast` uses the fast route where the model has one"
    " (no queue, surcharge applies)."
)
WEBHOOK_DESCRIPTION = (
    "An http(s) URL that receives the result when generation completes (signed, retried); empty or null: none."
)
SMALL_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAJklEQVR42mP8//8/AzbAxIADsECok5qac"
    "CHz69fx6SBdgpFkVwEAeqAJC1FnihAAAAAASUVORK5CYII="
)
"""An 8x8 picture, for examples that run on a fresh install without fetching anything."""
INPUT_DESCRIPTION = (
    "The model's parameters; `GET /api/v1/models/{id}` lists each one with its type, enum and bounds."
    " Parameters the model does not declare are dropped; a declared one of the wrong type or out of"
    " bounds is answered 400."
)


class MediaInput(BaseModel):
    """The parameters most models share; each model declares its own (and their bounds) in the catalog."""

    model_config = ConfigDict(extra="allow")

    prompt: str | None = None
    image: str | None = Field(default=None, description="An http(s) URL or a data: URI.")
    duration: int | None = Field(default=None, ge=1, description="Seconds (video); each model has its own bounds.")


class MediaRequest(BaseModel):
    """The envelope every generation endpoint takes."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, description="A model id of the endpoint's category.")
    mode: Mode = Field(default="auto", description=MODE_DESCRIPTION)
    webhook_url: str | None = Field(default=None, pattern=r"^(https?://|$)", description=WEBHOOK_DESCRIPTION)
    provider: ProviderPreferences | None = Field(default=None, description=PROVIDER_DESCRIPTION)


class ImageRequest(MediaRequest):
    """Images take their parameters at the top level of the body."""

    model_config = _examples(
        {
            "prompt": "A futuristic cityscape at sunset with flying cars",
            "model": "gpt-image-2",
            "mode": "fast",
            "aspect_ratio": "16:9",
        },
        {"prompt": "a lighthouse on a cliff", "model": "local-image", "resolution": "512"},
    )

    prompt: str | None = Field(default=None, description="Text-to-image models.")
    images: str | list[str] | None = Field(default=None, description="Image-edit models: the source image URL(s).")
    aspect_ratio: str | None = None


class VideoRequest(MediaRequest):
    model_config = _examples(
        {
            "model": "veo-3-1-i2v",
            "mode": "fast",
            "input": {
                "prompt": "Camera slowly pans across the scene",
                "image": "https://hypereal.tech/demo-girl.webp",
                "duration": 5,
            },
            "webhook_url": "https://your-server.com/webhook",
        },
        {"model": "local-video-t2v", "input": {"prompt": "a paper boat drifting down a river", "duration": 2}},
    )

    input: MediaInput = Field(default_factory=MediaInput, description=INPUT_DESCRIPTION)


class AudioRequest(MediaRequest):
    model_config = _examples(
        {"model": "audio-tts", "input": {"text": "(happy) Welcome to Hypereal!", "format": "mp3"}},
        {"model": "audio-clone", "input": {"text": "Clone my voice!", "audio": "https://example.com/voice.mp3"}},
        {"model": "local-tts", "input": {"text": "(happy) Welcome to Hypereal!", "format": "wav"}},
    )

    input: MediaInput = Field(default_factory=MediaInput, description=INPUT_DESCRIPTION)


class ThreeDRequest(MediaRequest):
    model_config = _examples(
        {"model": "hunyuan3d-v2-base", "input": {"image": "https://example.com/object.png"}},
        {
            "model": "tripo3d-multiview-to-3d",
            "input": {
                "front_image_url": "https://example.com/front.png",
                "back_image_url": "https://example.com/back.png",
                "left_image_url": "https://example.com/left.png",
                "right_image_url": "https://example.com/right.png",
            },
        },
        {"model": "local-3d-relief", "input": {"image": SMALL_PNG, "resolution": 32}},
    )

    input: MediaInput = Field(default_factory=MediaInput, description=INPUT_DESCRIPTION)


# ---------------------------------------------------------------- media answers


class Tried(BaseModel):
    """A route a job was handed to before the one serving it, and why it gave the job up."""

    provider: str | None
    model: str | None
    error: str | None


class Served(BaseModel):
    """Said in every answer a local stand-in served because the requested model's upstreams could
    not, or that another route failed first."""

    provider: str | None = None
    servedBy: str | None = None
    tried: list[Tried] | None = None


class JobAccepted(Served):
    """A job that is still running: poll `pollUrl` or wait for the webhook."""

    model_config = _examples(
        {
            "jobId": "job_abc123456",
            "status": "processing",
            "message": "Generation started. Result will be sent to your webhook URL.",
            "creditsUsed": 69,
            "pollUrl": "https://api.hypereal.cloud/api/v1/jobs/job_abc123456?model=veo-3-1-i2v&type=video",
        }
    )

    jobId: str
    status: Literal["processing"]
    message: str
    creditsUsed: Credits = Field(description="Charged now; refunded if the generation fails.")
    pollUrl: str


class ImageOutput(BaseModel):
    url: str
    model: str


class ImageResult(Served):
    model_config = _examples(
        {
            "created": 1766841456,
            "data": [{"url": "https://pub-xxx.r2.dev/generated/images/xxx.png", "model": "gpt-image-2"}],
            "resultId": "res_abc123456",
            "jobId": "res_abc123456",
            "creditsUsed": 4,
        }
    )

    created: int
    data: list[ImageOutput]
    resultId: str
    jobId: str
    creditsUsed: Credits


class Segment(BaseModel):
    model_config = ConfigDict(extra="allow")

    text: str
    start: float
    end: float


class AudioResult(Served):
    model_config = _examples(
        {
            "success": True,
            "jobId": "job_abc123456",
            "creditsUsed": 2,
            "text": "Hello, welcome to Hypereal.",
            "duration": 2.5,
            "segments": [
                {"text": "Hello,", "start": 0.0, "end": 0.8},
                {"text": "welcome to Hypereal.", "start": 0.9, "end": 2.5},
            ],
        }
    )

    success: Literal[True]
    jobId: str
    creditsUsed: Credits
    outputUrl: str | None = Field(default=None, description="Speech and voice cloning: the audio file.")
    audioUrl: str | None = Field(default=None, description="The same URL as `outputUrl`.")
    text: str | None = Field(default=None, description="Transcription.")
    duration: float | None = Field(default=None, description="Seconds of audio.")
    segments: list[Segment] | None = None


class ThreeDResult(Served):
    model_config = _examples(
        {
            "success": True,
            "jobId": "job_abc123456",
            "outputUrl": "https://cdn.hypereal.tech/3d/model.glb",
            "creditsUsed": 45,
        }
    )

    success: Literal[True]
    jobId: str
    outputUrl: str | None
    creditsUsed: Credits


# ---------------------------------------------------------------- jobs


class Job(BaseModel):
    model_config = _examples(
        {
            "jobId": "job_abc123",
            "status": "completed",
            "stage": "completed",
            "outputUrl": "https://cdn.hypereal.tech/output/video.mp4",
            "outputs": ["https://cdn.hypereal.tech/output/video.mp4"],
            "error": None,
            "model": "veo-3-1-i2v",
            "type": "video",
            "creditsUsed": 69,
            "createdAt": "2026-01-02T10:00:00.000Z",
            "completedAt": "2026-01-02T10:01:12.000Z",
            "provider": "wavespeed",
        }
    )

    jobId: str
    status: Literal["processing", "completed", "failed", "canceled"]
    stage: str
    outputUrl: str | None
    outputs: list[str]
    error: str | None
    model: str
    type: Literal["image", "video", "audio", "3d"]
    creditsUsed: Credits
    createdAt: str = Field(description="ISO 8601, UTC.")
    completedAt: str | None
    provider: str | None
    servedBy: str | None = None
    tried: list[Tried] | None = Field(default=None, description="Routes that failed the job before this one.")
    text: str | None = None
    duration: float | None = None
    segments: list[Segment] | None = None
    cancelRequested: bool | None = Field(default=None, description="Cancel asked while the job runs upstream.")


class JobPage(BaseModel):
    data: list[Job]
    has_more: bool
    next_cursor: float | None = Field(description="Pass as `before` for the next page.")


class DeliveryAttempt(BaseModel):
    attempt: int
    statusCode: int | None
    outcome: str
    latencyMs: float
    error: str | None
    at: float


class Delivery(BaseModel):
    id: int
    messageId: str = Field(description="The webhook-id header, the same on every attempt.")
    url: str
    status: str
    attempts: list[DeliveryAttempt]
    nextAttemptAt: float | None
    createdAt: float


class DeliveryList(BaseModel):
    data: list[Delivery]


class DeliveryQueued(BaseModel):
    queued: Literal[True]
    messageId: str


# ---------------------------------------------------------------- health


class Health(BaseModel):
    status: Literal["ok", "ready"]


class RouteState(BaseModel):
    """One route (a catalog route on one deployment of its provider) as this process sees it."""

    route: str = Field(description="`provider/model`, or `provider@deployment/model`.")
    state: Literal["closed", "half-open", "open"]
    reason: str | None = Field(description="Why it is left out, while it is.")
    reopens_in_seconds: float | None
    times_opened: int = Field(description="Times its circuit opened without the route recovering in between.")
    failures_in_a_row: int
    calls: int
    errors: int
    timeouts: int
    recent_error_rate: float
    latency_ms: float | None = Field(description="Recent time to an upstream's first byte (moving average).")
    last_error: str | None


class RouteList(BaseModel):
    data: list[RouteState]
