"""Reading a text prompt into a scene description for the `local-image` renderer.

The vocabulary is small and literal on purpose: time of day (night, sunset, sunny...),
terrain (sea, beach, mountains, forest, city, desert, snow, field, space), weather
(clouds, rain, fog, snowfall), simple objects (sun, moon, stars, trees, houses, circles,
squares, triangles, birds, boats, flowers, rainbow) with counts ("three trees") and colour
words, which colour the noun that follows them ("red circle", "purple mountains") or, when
free-standing, tint the whole palette. Words outside the vocabulary are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

Color = tuple[float, float, float]

# fmt: off
COLORS: dict[str, Color] = {
    "red": (0.86, 0.16, 0.14), "crimson": (0.75, 0.06, 0.2), "orange": (0.98, 0.55, 0.12),
    "yellow": (0.98, 0.86, 0.2), "gold": (0.93, 0.74, 0.22), "golden": (0.93, 0.74, 0.22),
    "green": (0.2, 0.65, 0.25), "emerald": (0.1, 0.6, 0.4), "lime": (0.6, 0.88, 0.2),
    "teal": (0.1, 0.55, 0.55), "cyan": (0.2, 0.82, 0.9), "turquoise": (0.25, 0.85, 0.78),
    "blue": (0.16, 0.36, 0.86), "navy": (0.06, 0.1, 0.38), "azure": (0.3, 0.6, 0.98),
    "purple": (0.52, 0.22, 0.7), "violet": (0.58, 0.36, 0.86), "magenta": (0.88, 0.2, 0.7),
    "pink": (0.98, 0.55, 0.72), "white": (0.96, 0.96, 0.96), "black": (0.04, 0.04, 0.05),
    "gray": (0.5, 0.5, 0.52), "grey": (0.5, 0.5, 0.52), "silver": (0.76, 0.78, 0.82),
    "brown": (0.45, 0.28, 0.14), "beige": (0.85, 0.78, 0.62),
}

# Word -> canonical noun. Terrain nouns shape the ground; the others are painted objects.
NOUNS: dict[str, str] = {
    "sky": "sky", "skies": "sky",
    "sea": "sea", "ocean": "sea", "water": "sea", "lake": "sea", "waves": "sea", "bay": "sea",
    "beach": "beach", "shore": "beach", "coast": "beach", "island": "beach",
    "mountain": "mountains", "mountains": "mountains", "peaks": "mountains", "alps": "mountains",
    "hill": "hills", "hills": "hills", "valley": "hills",
    "forest": "forest", "woods": "forest", "jungle": "forest", "pines": "forest",
    "city": "city", "skyline": "city", "town": "city", "buildings": "city", "skyscrapers": "city",
    "building": "city", "downtown": "city", "street": "city",
    "desert": "desert", "dunes": "desert", "dune": "desert", "sand": "desert", "sahara": "desert",
    "snow": "snow", "snowy": "snow", "winter": "snow", "ice": "snow", "arctic": "snow", "frozen": "snow",
    "field": "field", "fields": "field", "meadow": "field", "grass": "field", "countryside": "field",
    "farm": "field", "garden": "field", "park": "field", "prairie": "field",
    "space": "space", "galaxy": "space", "cosmos": "space", "nebula": "space", "universe": "space",
    "sun": "sun", "moon": "moon", "star": "stars", "stars": "stars", "starry": "stars",
    "cloud": "clouds", "clouds": "clouds", "cloudy": "clouds",
    "tree": "trees", "trees": "trees", "oak": "trees", "palm": "trees", "palms": "trees",
    "house": "houses", "houses": "houses", "cabin": "houses", "cottage": "houses", "home": "houses",
    "hut": "houses", "barn": "houses",
    "circle": "circles", "circles": "circles", "ball": "circles", "balls": "circles", "sphere": "circles",
    "spheres": "circles", "orb": "circles", "orbs": "circles", "planet": "circles", "planets": "circles",
    "dot": "circles", "dots": "circles", "bubble": "circles", "bubbles": "circles", "balloon": "circles",
    "balloons": "circles",
    "square": "squares", "squares": "squares", "box": "squares", "boxes": "squares", "cube": "squares",
    "cubes": "squares", "rectangle": "squares", "rectangles": "squares", "block": "squares",
    "blocks": "squares",
    "triangle": "triangles", "triangles": "triangles", "pyramid": "triangles", "pyramids": "triangles",
    "bird": "birds", "birds": "birds", "seagulls": "birds", "gulls": "birds",
    "boat": "boats", "boats": "boats", "ship": "boats", "ships": "boats", "sailboat": "boats",
    "sailboats": "boats", "yacht": "boats",
    "flower": "flowers", "flowers": "flowers", "tulips": "flowers", "roses": "flowers",
    "rainbow": "rainbow",
}
TERRAINS = ("sea", "beach", "mountains", "hills", "forest", "city", "desert", "snow", "field", "space")
SHAPES = ("circles", "squares", "triangles")

TIMES: dict[str, str] = {
    "night": "night", "midnight": "night", "nighttime": "night", "moonlit": "night",
    "starry": "night", "nocturnal": "night",
    "sunset": "sunset", "sunrise": "sunset", "dusk": "sunset", "dawn": "sunset", "twilight": "sunset",
    "evening": "sunset", "golden": "sunset",
    "sunny": "day", "noon": "day", "day": "day", "daytime": "day", "daylight": "day", "bright": "day",
    "morning": "day", "summer": "day",
    "overcast": "overcast", "stormy": "overcast", "storm": "overcast", "gloomy": "overcast",
    "rainy": "overcast", "rain": "overcast", "foggy": "overcast", "cloudy": "overcast",
}
WEATHER: dict[str, str] = {
    "rain": "rain", "rainy": "rain", "storm": "rain", "stormy": "rain", "raining": "rain",
    "fog": "fog", "foggy": "fog", "mist": "fog", "misty": "fog", "haze": "fog", "hazy": "fog",
    "snowing": "snowfall", "snowfall": "snowfall", "blizzard": "snowfall", "snowflakes": "snowfall",
}
NUMBERS = {
    "a": 1, "an": 1, "one": 1, "single": 1, "lone": 1, "two": 2, "pair": 2, "three": 3, "four": 4,
    "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "few": 3, "several": 5,
    "many": 8, "lots": 9,
}
# fmt: on
MAX_COUNT = 12


@dataclass(slots=True)
class Scene:
    time: str | None = None
    """day, sunset, night, overcast; None when the prompt does not say."""
    terrain: list[str] = field(default_factory=list)
    objects: dict[str, int] = field(default_factory=dict)
    """Canonical noun -> count (0 when mentioned without a number: the renderer picks)."""
    colors: dict[str, Color] = field(default_factory=dict)
    """Colour bound to the noun that follows it."""
    tint: list[Color] = field(default_factory=list)
    """Colour words not bound to a noun: they tint the palette."""
    weather: set[str] = field(default_factory=set)

    @property
    def recognised(self) -> bool:
        return bool(self.time or self.terrain or self.objects or self.colors or self.tint or self.weather)


def parse_prompt(prompt: str) -> Scene:
    words = re.findall(r"[a-z]+|\d+", prompt.lower())
    scene = Scene()
    pending_colors: list[Color] = []
    pending_count = 0
    for word in words:
        noun = NOUNS.get(word)
        if word in TIMES and scene.time is None:
            scene.time = TIMES[word]
        if word in WEATHER:
            scene.weather.add(WEATHER[word])
        if word in COLORS and noun is None:
            pending_colors.append(COLORS[word])
            continue
        if word.isdigit() or word in NUMBERS:
            pending_count = min(MAX_COUNT, int(word) if word.isdigit() else NUMBERS[word])
            continue
        if noun is None:
            # Filler words ("with", "of", "big") keep a colour or count waiting for its noun.
            if word in ("and", "with", "in", "on", "over", "under", "at", "the", "by"):
                scene.tint.extend(pending_colors)
                pending_colors, pending_count = [], 0
            continue
        if noun in TERRAINS and noun not in scene.terrain:
            scene.terrain.append(noun)
        elif noun not in TERRAINS:
            scene.objects[noun] = max(scene.objects.get(noun, 0), pending_count)
        if pending_colors:
            scene.colors[noun] = _mix(pending_colors)
        pending_colors, pending_count = [], 0
    scene.tint.extend(pending_colors)
    if scene.time is None and "space" not in scene.terrain and ("stars" in scene.objects or "moon" in scene.objects):
        scene.time = "night"
    if "snow" in scene.terrain and "rain" in scene.weather:
        scene.weather.discard("rain")
    return scene


def _mix(colors: list[Color]) -> Color:
    count = len(colors)
    return (
        sum(c[0] for c in colors) / count,
        sum(c[1] for c in colors) / count,
        sum(c[2] for c in colors) / count,
    )
