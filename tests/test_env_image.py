"""Image matching: similarity to the target, the colour and edge descriptors, the checks on
the hex-encoded pixels, a target read from a file, and the rendered picture."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from elm.environment import EnvironmentLoadError, load_environment
from environments.image.matching import sunset
from tests.test_env_builtins import run_harness

SIZE = 32


def _result(pixels: np.ndarray) -> dict:
    """What the harness returns for an image of values in [0, 1]."""
    data = np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    return {"size": data.shape[0], "rgb": data.tobytes().hex()}


@pytest.fixture(scope="module")
def environment():
    return load_environment("image")


def test_a_copy_of_the_target_scores_one_and_worse_images_less(environment):
    target = sunset(SIZE)
    perfect = environment.score(_result(target)).fitness
    assert perfect == pytest.approx(1.0, abs=2e-3)  # only the 8-bit rounding differs
    grey = environment.score(_result(np.full_like(target, 0.5))).fitness
    inverted = environment.score(_result(1.0 - target)).fitness
    assert perfect > grey > inverted


def test_warmth_and_edge_density_describe_the_picture(environment):
    red = np.zeros((SIZE, SIZE, 3))
    red[..., 0] = 1.0
    assert environment.score(_result(red)).descriptor == pytest.approx((0.5, 0.0))  # warmth capped
    blue = red[..., ::-1]
    assert environment.score(_result(blue)).descriptor == pytest.approx((-0.5, 0.0))
    checker = (np.indices((SIZE, SIZE)).sum(axis=0) % 2).astype(float)
    checkerboard = np.repeat(checker[..., None], 3, axis=2)
    warmth, edges = environment.score(_result(checkerboard)).descriptor
    assert warmth == pytest.approx(0.0) and edges == pytest.approx(0.5)  # every pair differs; capped
    halves = np.zeros((SIZE, SIZE, 3))
    halves[:, SIZE // 2:] = 1.0
    assert environment.score(_result(halves)).descriptor[1] == pytest.approx(SIZE / (2 * SIZE * (SIZE - 1)))


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        ({"size": 16, "rgb": "00" * 16 * 16 * 3}, "size must be 32"),
        ({"size": True, "rgb": "00" * SIZE * SIZE * 3}, "size must be 32"),
        ({"size": SIZE, "rgb": "00" * 100}, "string of 6144 hexadecimal digits"),
        ({"size": SIZE, "rgb": [0] * SIZE * SIZE * 3}, "string of 6144 hexadecimal digits"),
        ({"size": SIZE, "rgb": "zz" * SIZE * SIZE * 3}, "rgb is not hexadecimal"),
        ({"size": SIZE, "rgb": "0 " * SIZE * SIZE * 3}, "rgb is not hexadecimal"),
        ({"size": SIZE, "rgb": "0" * 10**7}, "string of 6144 hexadecimal digits"),
        ([[0, 0, 0]] * SIZE, "result must be an object"),
    ],
)
def test_broken_images_are_refused_with_the_reason(environment, result, reason):
    score = environment.score(result)
    assert not score.valid
    assert reason in score.invalid_reason


def test_the_harness_clips_values_and_refuses_nan_and_wrong_shapes(environment, tmp_path):
    bright = "import numpy as np\n\ndef draw(size):\n    return np.full((size, size, 3), 7.0)\n"
    result = run_harness(environment, bright, tmp_path / "bright")
    assert result["rgb"] == "ff" * SIZE * SIZE * 3
    nan = "import numpy as np\n\ndef draw(size):\n    return np.full((size, size, 3), np.nan)\n"
    with pytest.raises(RuntimeError, match="NaN"):
        run_harness(environment, nan, tmp_path / "nan")
    flat = "import numpy as np\n\ndef draw(size):\n    return np.zeros((size, size))\n"
    with pytest.raises(RuntimeError, match=r"expected \(32, 32, 3\)"):
        run_harness(environment, flat, tmp_path / "flat")


def test_a_target_can_be_an_image_file(tmp_path):
    picture = np.zeros((64, 64, 3), dtype=np.uint8)
    picture[:, :32] = (200, 40, 40)
    Image.fromarray(picture, "RGB").save(tmp_path / "target.png")
    environment = load_environment("image", {"target": str(tmp_path / "target.png"), "size": 16})
    expected = np.zeros((16, 16, 3))
    expected[:, :8] = np.array([200, 40, 40]) / 255
    assert environment.score(_result(expected)).fitness > 0.97
    with pytest.raises(EnvironmentLoadError, match="sunset"):
        load_environment("image", {"target": str(tmp_path / "missing.png")})
    (tmp_path / "not_an_image.png").write_text("hello")
    with pytest.raises(EnvironmentLoadError, match="cannot be read"):
        load_environment("image", {"target": str(tmp_path / "not_an_image.png")})


@pytest.mark.parametrize("size", [0, 3, 65, 32.0, "32", True])
def test_bad_sizes_are_refused(size):
    with pytest.raises(EnvironmentLoadError, match="option size"):
        load_environment("image", {"size": size})


def test_render_writes_the_image_enlarged(environment, tmp_path):
    written = environment.render(_result(sunset(SIZE)), str(tmp_path / "sunset"))
    with Image.open(written) as picture:
        assert picture.size == (256, 256)
        assert picture.getpixel((0, 0)) == tuple(int(round(v * 255)) for v in sunset(SIZE)[0, 0])
    assert environment.render({"size": SIZE}, str(tmp_path / "garbage")) is None
