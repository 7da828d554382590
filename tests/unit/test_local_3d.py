"""local-3d-relief / local-3d-multiview: GLBs that load back, true geometry, textures, bad input."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import cv2
import numpy as np
import pytest
import trimesh
from PIL import Image

from hypereal.errors import BadRequest, ValidationFailed
from hypereal.providers.base import InputFile, MediaRequest
from hypereal.providers.local import mesh3d
from hypereal.providers.local.relief3d import relief_glb
from hypereal.providers.local.visualhull import hull_glb

WHITE = (255, 255, 255)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def read_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Split a GLB into its JSON and BIN chunks, checking the container as the glTF 2.0 spec lays it out."""
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF" and version == 2 and length == len(data)
    json_length, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A  # "JSON"
    document = json.loads(data[20 : 20 + json_length])
    offset = 20 + json_length
    bin_length, bin_type = struct.unpack_from("<II", data, offset)
    assert bin_type == 0x004E4942  # "BIN\0"
    binary = data[offset + 8 : offset + 8 + bin_length]
    assert document["asset"]["version"] == "2.0"
    for view in document["bufferViews"]:
        assert view.get("byteOffset", 0) + view["byteLength"] <= len(binary)
    for mesh in document["meshes"]:
        for primitive in mesh["primitives"]:
            position = document["accessors"][primitive["attributes"]["POSITION"]]
            assert "min" in position and "max" in position  # required by the spec for POSITION
    return document, binary


def accessor(document: dict[str, Any], binary: bytes, index: int) -> np.ndarray:
    acc = document["accessors"][index]
    view = document["bufferViews"][acc["bufferView"]]
    dtype = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}[acc["componentType"]]
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[acc["type"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    values = np.frombuffer(binary, dtype=dtype, count=acc["count"] * width, offset=start)
    return values.reshape(acc["count"], width)


def load_mesh(data: bytes) -> trimesh.Trimesh:
    scene = trimesh.load(io.BytesIO(data), file_type="glb")
    [mesh] = scene.geometry.values()
    assert isinstance(mesh, trimesh.Trimesh)
    return mesh


# --- relief -------------------------------------------------------------------------------


def two_tone_disc(width: int = 320, height: int = 240) -> np.ndarray:
    """A disc (red left half, blue right half, green cap, a bright spot) on a light grey backdrop."""
    image = np.full((height, width, 3), 230, np.uint8)
    cv2.circle(image, (160, 120), 80, (200, 30, 30), -1)
    cv2.ellipse(image, (160, 120), (80, 80), 0, -90, 90, (30, 40, 200), -1)
    band = np.zeros(image.shape[:2], bool)
    band[45:80] = True
    band &= np.hypot(*np.mgrid[-120:120, -160:160]) < 80
    image[band] = (40, 170, 60)  # a green cap on top, so the picture is not symmetric upside down
    cv2.circle(image, (130, 100), 15, (255, 240, 120), -1)
    return image


@pytest.fixture(scope="module")
def disc_relief() -> tuple[np.ndarray, bytes]:
    image = two_tone_disc()
    data, _ = relief_glb(png(image), depth=0.3, resolution=96)
    return image, data


def test_relief_loads_back_closed_with_the_image_as_its_texture(
    disc_relief: tuple[np.ndarray, bytes],
) -> None:
    image, data = disc_relief
    mesh = load_mesh(data)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    texture = mesh.visual.material.baseColorTexture
    assert np.array_equal(np.asarray(texture.convert("RGB")), image)


def test_relief_outline_and_depth_follow_the_object(disc_relief: tuple[np.ndarray, bytes]) -> None:
    _, data = disc_relief
    mesh = load_mesh(data)
    # The disc is 160 px wide on a 320 px long edge: half a unit, round, and 0.3 of that deep.
    width, height, depth = mesh.extents
    assert width == pytest.approx(0.5, abs=0.02)
    assert height == pytest.approx(0.5, abs=0.02)
    assert depth == pytest.approx(0.3 * width, rel=0.05)
    # Round outline: the footprint's area is close to the disc's.
    assert mesh.volume < width * height * depth


def test_relief_uvs_put_each_part_of_the_picture_where_it_was(disc_relief: tuple[np.ndarray, bytes]) -> None:
    image, data = disc_relief
    document, binary = read_glb(data)
    primitive = document["meshes"][0]["primitives"][0]
    positions = accessor(document, binary, primitive["attributes"]["POSITION"])
    uvs = accessor(document, binary, primitive["attributes"]["TEXCOORD_0"])
    # Everything but the flat back, away from the rim where a vertex sits on the colour edge.
    front = (positions[:, 2] > positions[:, 2].min() + 1e-6) & (np.hypot(*positions[:, :2].T) < 0.22)
    # glTF's UV origin is the image's top-left corner.
    rows = np.clip((uvs[front, 1] * image.shape[0]).astype(int), 0, image.shape[0] - 1)
    cols = np.clip((uvs[front, 0] * image.shape[1]).astype(int), 0, image.shape[1] - 1)
    colours = image[rows, cols].astype(int)
    # The disc is centred in the picture, so is the mesh: position -> pixel is a plain scale.
    height, width = image.shape[:2]
    at_row = np.clip(((0.5 * height / width - positions[front, 1]) * width).astype(int), 0, height - 1)
    at_col = np.clip(((positions[front, 0] + 0.5) * width).astype(int), 0, width - 1)
    # Vertices on a colour edge may fall either side of it: allow a few pixels of slack.
    offsets = [(dy, dx) for dy in (-4, 0, 4) for dx in (-4, 0, 4)]
    nearby = [image[np.clip(at_row + dy, 0, height - 1), np.clip(at_col + dx, 0, width - 1)] for dy, dx in offsets]
    same = np.min([np.abs(colours - n.astype(int)).max(axis=1) for n in nearby], axis=0) < 40
    assert same.mean() > 0.97
    xs, ys = positions[front, 0], positions[front, 1]
    lower = ys < 0.0  # below the green cap
    left, right = colours[(xs < -0.08) & lower], colours[(xs > 0.08) & lower]
    assert len(left) > 20 and len(right) > 20
    assert (left[:, 0] > left[:, 2]).mean() > 0.9  # red half on the left
    assert (right[:, 2] > right[:, 0]).mean() > 0.9  # blue half on the right


def test_relief_raises_bright_parts(disc_relief: tuple[np.ndarray, bytes]) -> None:
    _, data = disc_relief
    mesh = load_mesh(data)
    vertices = mesh.vertices
    # The bright spot sits at (130, 100) px: left of and above the centre, at a similar distance from
    # the outline as its mirror image on the dark half, which must stay lower.
    spot = np.linalg.norm(vertices[:, :2] - [-0.094, 0.062], axis=1) < 0.02
    mirror = np.linalg.norm(vertices[:, :2] - [0.094, 0.062], axis=1) < 0.02
    assert vertices[spot, 2].max() > vertices[mirror, 2].max() + 0.005


def test_relief_uses_alpha_as_the_outline() -> None:
    rgba = np.zeros((200, 200, 4), np.uint8)
    rgba[..., :3] = (90, 160, 60)
    rgba[50:150, 20:180, 3] = 255  # a 160 x 100 opaque bar on a transparent canvas
    mesh = load_mesh(relief_glb(png(rgba), depth=0.2, resolution=64)[0])
    width, height, _ = mesh.extents
    assert width == pytest.approx(0.8, abs=0.03) and height == pytest.approx(0.5, abs=0.03)
    texture = np.asarray(mesh.visual.material.baseColorTexture.convert("RGBA"))
    visible = rgba[..., 3] > 0
    assert np.array_equal(texture[visible], rgba[visible])


def test_a_photo_without_backdrop_becomes_a_full_plaque() -> None:
    noise = np.random.default_rng(2).integers(0, 256, (120, 240, 3), dtype=np.uint8)
    mesh = load_mesh(relief_glb(png(noise), depth=0.1, resolution=48)[0])
    assert mesh.is_watertight
    assert mesh.extents[0] == pytest.approx(1.0, abs=1e-6)
    assert mesh.extents[1] == pytest.approx(0.5, abs=1e-6)


# --- visual hull ---------------------------------------------------------------------------


def silhouette(
    width: int, height: int, colour: tuple[int, int, int], *, canvas: int = 220, shape: str = "rect"
) -> np.ndarray:
    image = np.full((canvas, canvas, 3), WHITE, np.uint8)
    x0, y0 = (canvas - width) // 2, (canvas - height) // 2
    if shape == "rect":
        image[y0 : y0 + height, x0 : x0 + width] = colour
    else:
        cv2.ellipse(image, (canvas // 2, canvas // 2), (width // 2, height // 2), 0, 0, 360, colour, -1)
    return image


def hull(
    front: np.ndarray, back: np.ndarray, left: np.ndarray, right: np.ndarray, resolution: int = 64
) -> trimesh.Trimesh:
    data, _ = hull_glb(png(front), png(back), png(left), png(right), resolution=resolution)
    read_glb(data)
    return load_mesh(data)


RED, GREEN, BLUE, YELLOW = (230, 20, 20), (20, 200, 20), (20, 20, 230), (230, 230, 20)


@pytest.fixture(scope="module")
def cube() -> trimesh.Trimesh:
    return hull(
        silhouette(120, 120, RED),
        silhouette(120, 120, GREEN),
        silhouette(120, 120, BLUE),
        silhouette(120, 120, YELLOW),
    )


def test_cube_hull_is_watertight_with_the_true_bounding_box(cube: trimesh.Trimesh) -> None:
    assert cube.is_watertight and cube.volume > 0
    np.testing.assert_allclose(cube.bounds, [[-0.5] * 3, [0.5] * 3], atol=0.05)
    # Smoothing rounds the edges but keeps the volume.
    assert cube.volume == pytest.approx(1.0, rel=0.05)


def test_hull_colours_come_from_the_views_facing_each_side(cube: trimesh.Trimesh) -> None:
    colours = cube.visual.vertex_colors[:, :3].astype(int)
    normals = cube.vertex_normals
    # Front faces +Z, back -Z; the left view looks from -X and the right one from +X.
    for direction, colour in (((0, 0, 1), RED), ((0, 0, -1), GREEN), ((-1, 0, 0), BLUE), ((1, 0, 0), YELLOW)):
        facing = normals @ np.array(direction) > 0.95
        assert facing.sum() > 100
        np.testing.assert_allclose(colours[facing].mean(axis=0), colour, atol=12)


def test_upright_cylinder_hull_has_the_cylinders_bounding_box() -> None:
    # Diameter 90 px, height 150 px: every side view is a 90 x 150 rectangle.
    side = [silhouette(90, 150, (120, 120, 120)) for _ in range(4)]
    mesh = hull(*side)
    assert mesh.is_watertight
    expected = np.array([90 / 150, 1.0, 90 / 150])
    np.testing.assert_allclose(mesh.extents, expected, rtol=0.05)


def test_lying_cylinder_hull_is_the_cylinder() -> None:
    # Axis along Z: front and back see a disc, the sides a 180 x 100 rectangle. The hull is exact here.
    disc = silhouette(100, 100, (200, 120, 60), shape="ellipse")
    side = silhouette(180, 100, (200, 120, 60))
    mesh = hull(disc, disc, side, side)
    assert mesh.is_watertight
    length = 180 / 100
    np.testing.assert_allclose(mesh.extents, [1.0, 1.0, length], rtol=0.05)
    assert mesh.volume == pytest.approx(np.pi * 0.25 * length, rel=0.05)


def test_views_framed_at_different_scales_agree() -> None:
    # The same cube, photographed from twice as far for the side views.
    mesh = hull(silhouette(120, 120, RED), silhouette(120, 120, RED), silhouette(60, 60, RED), silhouette(60, 60, RED))
    np.testing.assert_allclose(mesh.extents, [1.0, 1.0, 1.0], rtol=0.05)


def test_side_views_put_features_on_the_right_side() -> None:
    # A step shape seen from the side: the upper half only exists towards the front (+Z).
    def step(mirrored: bool) -> np.ndarray:
        image = np.full((200, 200, 3), WHITE, np.uint8)
        image[100:160, 40:160] = RED  # lower block, full depth
        front_half = slice(100, 160) if not mirrored else slice(40, 100)
        image[40:100, front_half] = RED  # upper block, front half only
        return image

    block = silhouette(120, 120, RED, canvas=200)
    # Left view: image right = +Z (front); right view: image right = -Z.
    mesh = hull(block, block, step(mirrored=False), step(mirrored=True))
    upper = mesh.vertices[mesh.vertices[:, 1] > 0.25]
    assert upper[:, 2].min() > -0.1 and upper[:, 2].max() > 0.4


def test_empty_silhouette_is_a_bad_request() -> None:
    blank = np.full((100, 100, 3), 255, np.uint8)
    block = silhouette(60, 60, RED, canvas=100)
    with pytest.raises(BadRequest, match="left"):
        hull_glb(png(block), png(block), png(blank), png(block))
    transparent = np.zeros((100, 100, 4), np.uint8)
    with pytest.raises(BadRequest):
        hull_glb(png(block), png(transparent), png(block), png(block))


# --- the models behind the API -----------------------------------------------------------


def fetcher(files: dict[str, bytes]):  # type: ignore[no-untyped-def]
    async def fetch(url: str, *, kind: str) -> InputFile:
        assert kind == "image"
        return InputFile(data=files[url], content_type="image/png", url=url)

    return fetch


def request(model: str, **params: object) -> MediaRequest:
    return MediaRequest(job_id="job_test", model=model, upstream_model=model, category="3d", params=params)


async def test_relief_model_answers_a_glb() -> None:
    model = mesh3d.MODELS["local-3d-relief"]
    files = {"u:disc": png(two_tone_disc())}
    result = await model(request("local-3d-relief", image="u:disc", depth=0.2, resolution=48), fetcher(files))
    [output] = result.outputs
    assert (output.content_type, output.extension) == ("model/gltf-binary", "glb")
    assert output.data is not None
    assert load_mesh(output.data).is_watertight


async def test_multiview_model_answers_a_coloured_glb() -> None:
    model = mesh3d.MODELS["local-3d-multiview"]
    files = {f"u:{n}": png(silhouette(100, 100, RED)) for n in ("front", "back", "left", "right")}
    params = {f"{n}_image_url": f"u:{n}" for n in ("front", "back", "left", "right")}
    result = await model(request("local-3d-multiview", resolution=32, **params), fetcher(files))
    [output] = result.outputs
    assert output.extension == "glb" and output.data is not None
    document, _ = read_glb(output.data)
    assert "COLOR_0" in document["meshes"][0]["primitives"][0]["attributes"]


BROKEN = {
    "1x1": png(np.zeros((1, 1, 3), np.uint8)),
    "text": b"definitely not a picture",
    "truncated": png(two_tone_disc())[:300],
}


@pytest.mark.parametrize("kind", list(BROKEN))
async def test_broken_images_are_bad_requests(kind: str) -> None:
    files = {"u:bad": BROKEN[kind], "u:good": png(silhouette(100, 100, RED))}
    with pytest.raises(BadRequest):
        await mesh3d.MODELS["local-3d-relief"](request("local-3d-relief", image="u:bad"), fetcher(files))
    views = {
        "front_image_url": "u:good",
        "back_image_url": "u:good",
        "left_image_url": "u:good",
        "right_image_url": "u:bad",
    }
    with pytest.raises(BadRequest):
        await mesh3d.MODELS["local-3d-multiview"](request("local-3d-multiview", **views), fetcher(files))


async def test_relief_rejects_a_fully_transparent_image() -> None:
    files = {"u:clear": png(np.zeros((64, 64, 4), np.uint8))}
    with pytest.raises(BadRequest):
        await mesh3d.MODELS["local-3d-relief"](request("local-3d-relief", image="u:clear"), fetcher(files))


@pytest.mark.parametrize("params", [{"depth": 2.0}, {"resolution": 8}, {"resolution": True}, {"image": ""}])
async def test_relief_parameters_are_validated(params: dict[str, object]) -> None:
    files = {"u:disc": png(two_tone_disc())}
    with pytest.raises(ValidationFailed):
        await mesh3d.MODELS["local-3d-relief"](
            request("local-3d-relief", **{"image": "u:disc", **params}), fetcher(files)
        )


async def test_multiview_requires_all_four_views() -> None:
    files = {"u:good": png(silhouette(100, 100, RED))}
    params = {"front_image_url": "u:good", "back_image_url": "u:good", "left_image_url": "u:good"}
    with pytest.raises(ValidationFailed, match="right_image_url"):
        await mesh3d.MODELS["local-3d-multiview"](request("local-3d-multiview", **params), fetcher(files))
