"""Rules the built-in catalog data file must keep, checked on the raw YAML.

The schema and loader validate shape; these tests hold the data to the public Hypereal
price ranges and counts, to the id shapes of each upstream, and to the parameters the
built-in local models implement.
"""

from __future__ import annotations

import importlib.resources
import re
from collections import Counter
from typing import Any

import pytest
import yaml

CATALOG_TEXT = (importlib.resources.files("hypereal.catalog") / "models.yaml").read_text(encoding="utf-8")
CATALOG: dict[str, Any] = yaml.safe_load(CATALOG_TEXT)
MODELS: list[dict[str, Any]] = CATALOG["models"]
PROVIDERS: dict[str, dict[str, Any]] = CATALOG["providers"]
FAMILIES: list[dict[str, Any]] = CATALOG["families"]

CATEGORIES = {"llm", "image", "image-edit", "video", "audio", "3d"}
TASKS = {"t2i", "edit", "t2v", "i2v", "tts", "clone", "asr", "music", "image-to-3d", "multiview-to-3d"}
PARAM_TYPES = {"string", "integer", "number", "boolean", "image", "images", "audio", "array", "object"}
PARAM_KEYS = {
    "type",
    "required",
    "default",
    "enum",
    "minimum",
    "maximum",
    "max_length",
    "max_items",
    "description",
}
PRICE_KEYS = {
    "per_call",
    "per_second",
    "per_input_minute",
    "fast_surcharge_percent",
    "input_per_mtok",
    "output_per_mtok",
    "cached_input_per_mtok",
}
INTEGER_PRICE_KEYS = {"per_call", "per_second", "per_input_minute", "fast_surcharge_percent"}

# The public docs list 62 video, 32 image, 15 editing, 11 audio, 9 3D and 56 LLM models.
# Tolerance: two per category, so retiring one upstream model does not break the build.
DOC_COUNTS = {"video": 62, "image": 32, "image-edit": 15, "audio": 11, "3d": 9, "llm": 56}
COUNT_TOLERANCE = 2

# Ids the docs and clients in the wild use, with the category each must have.
DOC_IDS = {
    "nano-banana-t2i": "image",
    "nano-banana-edit": "image-edit",
    "nano-banana-pro-t2i": "image",
    "nano-banana-pro-edit": "image-edit",
    "gpt-4o-image": "image",
    "gpt-image-2": "image",
    "gemini-3-1-flash-t2i": "image",
    "sora-2-t2v": "video",
    "sora-2-i2v": "video",
    "wan-2-6-i2v": "video",
    "veo-3-1-i2v": "video",
    "kling-3-0-std-t2v": "video",
    "kling-3-0-std-i2v": "video",
    "seedance-1-5-i2v": "video",
    "grok-video-i2v": "video",
    "grok-imagine-video-t2v": "video",
    "ai-avatar-i2v": "video",
    "hunyuan3d-v2-base": "3d",
    "hunyuan3d-v2-multiview": "3d",
    "tripo3d-2-5-i3d": "3d",
    "tripo3d-multiview-to-3d": "3d",
    "audio-tts": "audio",
    "audio-clone": "audio",
    "audio-asr": "audio",
    "lyria-3-pro": "audio",
    "claude-sonnet-4-6": "llm",
    "gpt-5": "llm",
    "gpt-5-codex": "llm",
}

# Upstream model id shapes, by provider type.
ROUTE_ID_SHAPES = {
    "fal": re.compile(r"^[a-z0-9][a-z0-9-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)+$"),
    "replicate": re.compile(r"^[a-z0-9][a-z0-9_-]*/[a-z0-9][a-z0-9._-]*$"),
    "wavespeed": re.compile(r"^[a-z0-9][a-z0-9-]*(/[a-z0-9][a-z0-9._-]*)+$"),
    "openai": re.compile(r"^[a-z0-9][a-z0-9.-]*$"),
    "anthropic": re.compile(r"^claude-[a-z0-9-]+$"),
}

# Parameters that carry input files, and the type that makes the engine fetch and check them.
FILE_PARAM_TYPES = {
    "image": "image",
    "images": "images",
    "audio": "audio",
    "mask": "image",
    "last_image": "image",
}


def is_builtin(model: dict[str, Any]) -> bool:
    kinds = {PROVIDERS.get(route["provider"], {}).get("type") for route in model["routes"]}
    return kinds <= {"local", "local-echo"}


UPSTREAM = [m for m in MODELS if not is_builtin(m)]
BUILTIN = [m for m in MODELS if is_builtin(m)]
BY_ID = {m["id"]: m for m in MODELS}


def allowed_durations(model: dict[str, Any]) -> list[int]:
    spec = model["params"]["duration"]
    if "enum" in spec:
        return list(spec["enum"])
    return [spec["minimum"], spec["maximum"]]


def test_top_level_holds_only_providers_models_and_families() -> None:
    assert set(CATALOG) == {"providers", "models", "families"}
    assert MODELS and PROVIDERS and FAMILIES


def test_ids_are_unique_and_lowercase() -> None:
    counts = Counter(m["id"] for m in MODELS)
    assert [i for i, n in counts.items() if n > 1] == []
    bad = [m["id"] for m in MODELS if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", m["id"])]
    assert bad == []
    media_with_dots = [m["id"] for m in MODELS if m["category"] != "llm" and "." in m["id"]]
    assert media_with_dots == []


def test_category_counts_reach_the_docs_counts() -> None:
    counts = Counter(m["category"] for m in UPSTREAM)
    short = {c: (counts[c], n) for c, n in DOC_COUNTS.items() if counts[c] < n - COUNT_TOLERANCE}
    assert short == {}
    assert set(counts) <= CATEGORIES


def test_docs_ids_are_present_with_their_categories() -> None:
    wrong = {i: BY_ID.get(i, {}).get("category") for i, c in DOC_IDS.items() if BY_ID.get(i, {}).get("category") != c}
    assert wrong == {}


def test_providers_name_credentials_by_environment_variable_only() -> None:
    for name, provider in PROVIDERS.items():
        assert set(provider) <= {"type", "api_key_env", "base_url"}, name
        if "api_key_env" in provider:
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", provider["api_key_env"]), name
    assert {p["type"] for p in PROVIDERS.values()} >= {"fal", "replicate", "wavespeed", "openai", "anthropic"}


def test_every_route_names_a_defined_provider_and_a_well_shaped_upstream_id() -> None:
    errors = []
    for model in MODELS:
        assert model["routes"], model["id"]
        for route in model["routes"]:
            if route["provider"] not in PROVIDERS:
                errors.append((model["id"], "unknown provider", route["provider"]))
                continue
            upstream = route["model"]
            kind = PROVIDERS[route["provider"]]["type"]
            shape = ROUTE_ID_SHAPES.get(kind)
            if not isinstance(upstream, str) or not upstream.strip():
                errors.append((model["id"], "empty upstream id", upstream))
            elif shape is not None and not shape.fullmatch(upstream):
                errors.append((model["id"], f"not a {kind} id", upstream))
            if not set(route.get("modes", ["auto", "fast"])) <= {"auto", "fast"}:
                errors.append((model["id"], "unknown mode", route.get("modes")))
        if not any("auto" in r.get("modes", ["auto", "fast"]) for r in model["routes"]):
            errors.append((model["id"], "no route serves mode auto", None))
    assert errors == []


def test_params_are_well_formed_and_every_enum_contains_its_default() -> None:
    errors = []
    for model in MODELS:
        for name, spec in model.get("params", {}).items():
            where = f"{model['id']}.{name}"
            if spec["type"] not in PARAM_TYPES or not set(spec) <= PARAM_KEYS:
                errors.append((where, "shape", spec))
                continue
            if "default" in spec:
                default = spec["default"]
                if "enum" in spec and default not in spec["enum"]:
                    errors.append((where, "default outside enum", default))
                if "minimum" in spec and default < spec["minimum"]:
                    errors.append((where, "default below minimum", default))
                if "maximum" in spec and default > spec["maximum"]:
                    errors.append((where, "default above maximum", default))
                if spec.get("required"):
                    errors.append((where, "required with a default", default))
            if "minimum" in spec and "maximum" in spec and spec["minimum"] > spec["maximum"]:
                errors.append((where, "empty range", spec))
            if spec["type"] == "integer":
                values = list(spec.get("enum", [])) + [spec[k] for k in ("default", "minimum", "maximum") if k in spec]
                if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                    errors.append((where, "integer param with non-integer values", values))
    assert errors == []


def test_file_inputs_use_fetchable_param_types() -> None:
    errors = []
    for model in MODELS:
        for name, spec in model.get("params", {}).items():
            expected = FILE_PARAM_TYPES.get(name, "image" if name.endswith("_image_url") else None)
            if expected is not None and spec["type"] != expected:
                errors.append((model["id"], name, spec["type"]))
    assert errors == []


def test_media_models_take_the_documented_inputs() -> None:
    errors = []
    for model in MODELS:
        params = model.get("params", {})
        category, task = model["category"], model.get("task")
        if category == "llm":
            if params or not isinstance(model.get("context_window"), int):
                errors.append((model["id"], "llm shape"))
            elif not 0 < model["max_output_tokens"] <= model["context_window"]:
                errors.append((model["id"], "max_output_tokens"))
            continue
        if "context_window" in model or "max_output_tokens" in model:
            errors.append((model["id"], "token limits on a media model"))
        if task is not None and task not in TASKS:
            errors.append((model["id"], "unknown task"))
        if category == "image-edit" and not params.get("images", {}).get("required"):
            errors.append((model["id"], "edit models take their source in a required `images`"))
        if category == "image" and not params.get("prompt", {}).get("required"):
            errors.append((model["id"], "image models need a prompt"))
        if task == "i2v" and not (params.get("image", {}).get("required") or params.get("images", {}).get("required")):
            errors.append((model["id"], "i2v without a required input image"))
        if task == "t2v" and not params.get("prompt", {}).get("required"):
            errors.append((model["id"], "t2v without a required prompt"))
        if task == "multiview-to-3d" and not params.get("front_image_url", {}).get("required"):
            errors.append((model["id"], "multiview without a front view"))
    assert errors == []


def test_descriptions_are_one_sentence() -> None:
    bad = [
        m["id"]
        for m in MODELS
        if not m.get("name")
        or not isinstance(m.get("description"), str)
        or not m["description"].endswith(".")
        or "\n" in m["description"]
        or len(m["description"]) > 300
        or m["description"].count(". ") > 0
    ]
    assert bad == []


def test_prices_are_integers_for_media_and_use_one_unit() -> None:
    errors = []
    for model in MODELS:
        pricing = model["pricing"]
        if not set(pricing) <= PRICE_KEYS:
            errors.append((model["id"], "unknown price key"))
        units = [k for k in ("per_call", "per_second", "per_input_minute") if k in pricing]
        if model["category"] == "llm":
            if units or not {"input_per_mtok", "output_per_mtok"} <= set(pricing):
                errors.append((model["id"], "llm price units"))
            continue
        if len(units) != 1:
            errors.append((model["id"], "exactly one media price unit", units))
        for key in INTEGER_PRICE_KEYS & set(pricing):
            value = pricing[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                errors.append((model["id"], key, value))
        if not 0 <= pricing.get("fast_surcharge_percent", 0) <= 100:
            errors.append((model["id"], "surcharge percent"))
    assert errors == []


def test_video_prices_stay_in_the_docs_range_for_every_allowed_duration() -> None:
    errors = []
    for model in (m for m in UPSTREAM if m["category"] == "video"):
        pricing = model["pricing"]
        if "per_second" in pricing:
            if "duration" not in model["params"]:
                errors.append((model["id"], "per_second without a duration param"))
                continue
            for seconds in allowed_durations(model):
                if not 20 <= pricing["per_second"] * seconds <= 150:
                    errors.append((model["id"], seconds, pricing["per_second"] * seconds))
        elif not 20 <= pricing["per_call"] <= 150:
            errors.append((model["id"], pricing["per_call"]))
    assert errors == []


@pytest.mark.parametrize(("category", "low", "high"), [("image", 4, 25), ("image-edit", 4, 14), ("3d", 45, 45)])
def test_per_call_prices_stay_in_the_docs_range(category: str, low: int, high: int) -> None:
    outside = {
        m["id"]: m["pricing"].get("per_call")
        for m in UPSTREAM
        if m["category"] == category and not low <= m["pricing"].get("per_call", -1) <= high
    }
    assert outside == {}


def test_audio_prices_follow_the_docs() -> None:
    audio = [m for m in UPSTREAM if m["category"] == "audio"]
    assert {m["id"]: m["pricing"] for m in audio if m.get("task") == "clone"} == {"audio-clone": {"per_call": 107}}
    assert {m["id"]: m["pricing"] for m in audio if m.get("task") == "asr"} == {"audio-asr": {"per_input_minute": 1}}
    others = [m for m in audio if m.get("task") not in {"clone", "asr"}]
    assert others and all(1 <= m["pricing"]["per_call"] <= 150 for m in others)


def test_llm_prices_are_positive_per_million_tokens() -> None:
    errors = []
    for model in (m for m in UPSTREAM if m["category"] == "llm"):
        p = model["pricing"]
        if not 0 < p["input_per_mtok"] <= p["output_per_mtok"]:
            errors.append((model["id"], p))
        if not 0 < p.get("cached_input_per_mtok", p["input_per_mtok"]) <= p["input_per_mtok"]:
            errors.append((model["id"], "cached", p))
    assert errors == []
    # Spot checks against published prices: USD per 1M tokens times 100.
    assert BY_ID["gpt-5"]["pricing"] == {
        "input_per_mtok": 125,
        "output_per_mtok": 1000,
        "cached_input_per_mtok": 12.5,
    }
    assert BY_ID["claude-sonnet-4-6"]["pricing"]["input_per_mtok"] == 300
    assert BY_ID["claude-sonnet-4-6"]["pricing"]["output_per_mtok"] == 1500


def test_llm_routes_go_to_their_vendor() -> None:
    vendors = {
        m["id"]: {PROVIDERS[r["provider"]]["type"] for r in m["routes"]} for m in UPSTREAM if m["category"] == "llm"
    }
    wrong = {
        mid: kinds
        for mid, kinds in vendors.items()
        if kinds != ({"anthropic"} if mid.startswith("claude-") else {"openai"})
    }
    assert wrong == {}


# The vendors' dated ids, as their official SDKs list them (openai.types.shared.ChatModel,
# anthropic.types.Model) and Anthropic's model pages give them ("Model ID: claude-sonnet-4-5-20250929").
DATED = {
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-opus-4-1": "claude-opus-4-1-20250805",
    "claude-opus-4-5": "claude-opus-4-5-20251101",
    "gpt-5": "gpt-5-2025-08-07",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "o3": "o3-2025-04-16",
}


def test_aliases_are_the_vendors_dated_ids_and_name_one_model_each() -> None:
    aliases = [alias for m in MODELS for alias in m.get("aliases", [])]
    assert len(aliases) == len(set(aliases)) and not set(aliases) & set(BY_ID)
    for model_id, dated in DATED.items():
        assert dated in BY_ID[model_id]["aliases"]
    for model in (m for m in MODELS if m.get("aliases")):
        assert model["category"] == "llm"
        for alias in model["aliases"]:
            # A dated id is the model's id (or, for Claude, its snapshot's) followed by a date.
            upstream = model["routes"][0]["model"]
            assert re.fullmatch(r"(?:-\d{4}-\d{2}-\d{2}|-\d{8})", alias.removeprefix(model["id"])) or alias == upstream


def test_families_cover_the_vendors_prefixes_and_are_priced_per_token() -> None:
    by_pattern = {f["pattern"]: f for f in FAMILIES}
    assert {"claude-*", "gpt-*", "o[0-9]*", "codex-*", "chatgpt-*"} <= set(by_pattern)
    for family in FAMILIES:
        vendor = PROVIDERS[family["provider"]]["type"]
        assert vendor == ("anthropic" if family["pattern"].startswith("claude-") else "openai"), family
        p = family["pricing"]
        assert 0 < p["input_per_mtok"] <= p["output_per_mtok"], family
        assert family["context_window"] and family["max_output_tokens"], family
    # A catch-all is never cheaper than a tier it covers: an unknown tier is not sold below cost.
    for tier in ("claude-opus-*", "claude-sonnet-*", "claude-haiku-*"):
        assert by_pattern[tier]["pricing"]["output_per_mtok"] <= by_pattern["claude-*"]["pricing"]["output_per_mtok"]


def test_docs_examples_cost_what_the_docs_show() -> None:
    # The docs' video example: veo-3-1-i2v, 5 seconds, mode "fast" answers creditsUsed 69.
    veo = BY_ID["veo-3-1-i2v"]["pricing"]
    assert veo["per_second"] * 5 * (100 + veo["fast_surcharge_percent"]) == 69 * 100
    assert (
        BY_ID["veo-3-1-i2v"]["params"]["duration"]["minimum"]
        <= 5
        <= BY_ID["veo-3-1-i2v"]["params"]["duration"]["maximum"]
    )
    # The docs' image example: gpt-image-2 in mode "fast" answers creditsUsed 4.
    assert BY_ID["gpt-image-2"]["pricing"] == {"per_call": 4}
    # The docs send the video example in mode "fast", which goes to WaveSpeed.
    assert "veo-3-1-i2v" in WAVESPEED_MODELS and "wan-2-6-i2v" in WAVESPEED_MODELS


WAVESPEED_MODELS = {
    m["id"] for m in MODELS if any(PROVIDERS[r["provider"]]["type"] == "wavespeed" for r in m["routes"])
}


def test_fast_mode_goes_to_wavespeed_first_and_auto_mode_to_the_primary_upstream() -> None:
    errors = []
    for model in MODELS:
        routes = model["routes"]
        fast = [r for r in routes if "fast" in r.get("modes", ["auto", "fast"])]
        auto = [r for r in routes if "auto" in r.get("modes", ["auto", "fast"])]
        if model["id"] in WAVESPEED_MODELS and PROVIDERS[fast[0]["provider"]]["type"] != "wavespeed":
            errors.append((model["id"], "mode fast does not go to WaveSpeed first"))
        if PROVIDERS[auto[0]["provider"]]["type"] == "replicate":
            errors.append((model["id"], "Replicate is a fallback, not the first route"))
        if any(PROVIDERS[r["provider"]]["type"] == "replicate" and "fast" in r.get("modes", ["fast"]) for r in routes):
            errors.append((model["id"], "Replicate starts too slowly to serve mode fast"))
        fast_only = [r for r in routes if r.get("modes") == ["fast"]]
        if fast_only and not model["pricing"].get("fast_surcharge_percent"):
            errors.append((model["id"], "a separate fast route without a surcharge"))
    assert errors == []


LOCAL_PRICES = {
    "local-image": {"per_call": 1},
    "local-upscale": {"per_call": 1},
    "local-remove-background": {"per_call": 1},
    "local-inpaint": {"per_call": 1},
    "local-stylize": {"per_call": 1},
    "local-outpaint": {"per_call": 1},
    "local-video-i2v": {"per_second": 1},
    "local-video-t2v": {"per_second": 1},
    "local-tts": {"per_call": 1},
    "local-voice-match": {"per_call": 2},
    "local-asr": {"per_input_minute": 1},
    "local-3d-relief": {"per_call": 2},
    "local-3d-multiview": {"per_call": 2},
}


def test_builtin_local_models_are_routed_to_themselves_at_their_prices() -> None:
    assert {m["id"] for m in BUILTIN} == set(LOCAL_PRICES) | {"local-echo"}
    for model_id, price in LOCAL_PRICES.items():
        model = BY_ID[model_id]
        assert model["pricing"] == price, model_id
        assert model["routes"] == [{"provider": "local", "model": model_id}], model_id
        assert PROVIDERS["local"] == {"type": "local"}


def test_builtin_local_params_match_what_the_local_models_implement() -> None:
    def summary(model_id: str) -> dict[str, tuple[Any, ...]]:
        return {
            name: (
                spec["type"],
                spec.get("required", False),
                spec.get("default"),
                tuple(spec.get("enum", ())),
            )
            for name, spec in BY_ID[model_id]["params"].items()
        }

    aspects = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9")
    formats = ("png", "jpeg", "webp")
    audio_formats = ("mp3", "wav", "ogg", "flac")
    assert summary("local-image") == {
        "prompt": ("string", True, None, ()),
        "seed": ("integer", False, None, ()),
        "aspect_ratio": ("string", False, "1:1", aspects),
        "resolution": ("string", False, "1K", ("512", "1K", "2K")),
        "output_format": ("string", False, "png", formats),
    }
    assert summary("local-upscale")["scale"] == ("integer", False, 2, (2, 4))
    assert summary("local-remove-background") == {"images": ("images", True, None, ())}
    inpaint = summary("local-inpaint")
    assert inpaint["mask"] == ("image", False, None, ())
    assert inpaint["box"][0] == "array" and inpaint["method"] == ("string", False, "telea", ("telea", "ns"))
    assert summary("local-stylize")["style"][2] == "stylize" and len(summary("local-stylize")["style"][3]) == 10
    assert summary("local-outpaint")["aspect_ratio"] == ("string", False, "16:9", aspects)
    i2v = BY_ID["local-video-i2v"]["params"]
    assert summary("local-video-i2v")["prompt"] == ("string", False, "", ())
    assert summary("local-video-i2v")["image"] == ("image", True, None, ())
    assert (i2v["duration"]["default"], i2v["duration"]["minimum"], i2v["duration"]["maximum"]) == (5, 1, 10)
    assert summary("local-video-i2v")["fps"] == ("integer", False, 24, (12, 24, 30))
    assert summary("local-video-i2v")["resolution"] == ("string", False, "720p", ("480p", "720p"))
    assert summary("local-video-t2v")["aspect_ratio"] == ("string", False, "16:9", ("16:9", "9:16", "1:1"))
    tts = BY_ID["local-tts"]["params"]
    assert summary("local-tts")["format"] == ("string", False, "mp3", audio_formats)
    assert (tts["text"]["max_length"], tts["voice"]["default"]) == (5000, "en-us")
    assert (tts["speed"]["default"], tts["speed"]["minimum"], tts["speed"]["maximum"]) == (1.0, 0.5, 2.0)
    assert summary("local-voice-match")["audio"] == ("audio", True, None, ())
    assert summary("local-asr") == {
        "audio": ("audio", True, None, ()),
        "language": ("string", False, "en", ("en",)),
    }
    relief = BY_ID["local-3d-relief"]["params"]
    assert (relief["depth"]["default"], relief["resolution"]["default"]) == (0.2, 128)
    multiview = summary("local-3d-multiview")
    assert all(
        multiview[f"{side}_image_url"] == ("image", True, None, ()) for side in ("front", "back", "left", "right")
    )
    assert BY_ID["local-3d-multiview"]["params"]["resolution"]["default"] == 96


def test_local_echo_is_the_deterministic_test_chat_model() -> None:
    echo = BY_ID["local-echo"]
    assert echo["category"] == "llm"
    assert echo["routes"] == [{"provider": "echo", "model": "local-echo"}]
    assert PROVIDERS["echo"] == {"type": "local-echo"}
    assert echo["pricing"] == {"input_per_mtok": 10, "output_per_mtok": 10}
    assert (echo["context_window"], echo["max_output_tokens"]) == (32768, 4096)
    assert "deterministic" in echo["description"].lower() and "echo" in echo["description"]


def test_the_loader_accepts_the_file() -> None:
    try:
        from hypereal.catalog import load_catalog  # type: ignore[attr-defined]
    except ImportError as exc:
        pytest.skip(f"catalog loader not available yet: {exc}")
    catalog = load_catalog()
    models = catalog.models
    ids = set(models) if isinstance(models, dict) else {m.id for m in models}
    assert ids == set(BY_ID)
