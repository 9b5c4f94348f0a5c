"""Each lecture scene shows its claim: the doctor's finding fires (or does not), or training stops as claimed.

Runs each scene's Session headless for the scene's epochs (all scenes: ~1 minute on a loaded 2-core
machine, most of it the two deep 30-epoch scenes), so the check is deterministic, not timed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deepwell.serve.scenes import METRICS, SCENES, scene_spec
from deepwell.serve.session import Session

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("name", list(SCENES))
def test_scene_shows_its_claim(name: str, tmp_path: Path) -> None:
    scene = SCENES[name]
    session = Session(scene_spec(name), [tmp_path], tmp_path / "session")
    try:
        if scene.epochs:
            session.step() if scene.epochs == 1 else session.controller.step(scene.epochs)
        assert session.wait_held(300), f"scene {name}: the worker did not reach a pause"
        rules = [finding["rule"] for finding in session.findings()]
        epochs = len(session.stream.state.history)
        if scene.finding:
            assert scene.finding in rules, f"scene {name}: expected finding {scene.finding} after {epochs} epochs, saw {rules}"
        assert not set(scene.absent) & set(rules), f"scene {name}: {scene.absent} should not fire, saw {rules}"
        if scene.metric:
            value = METRICS[scene.metric](session.parts.model)
            assert (scene.above is None or value > scene.above) and (scene.below is None or value < scene.below), \
                f"scene {name}: {scene.metric} = {value:.3f} after {epochs} epochs, expected above {scene.above}, below {scene.below}"
        if scene.stop:
            assert session.result is not None and session.result.stop_reason.value == scene.stop, \
                f"scene {name}: expected training to stop by {scene.stop}; saw {session.result and session.result.stop_reason}"
            assert epochs < scene.epochs
        else:
            assert epochs == scene.epochs, f"scene {name}: ran {epochs} epochs, asked for {scene.epochs}"
    finally:
        session.close()


def test_unknown_scene_names_the_known_ones() -> None:
    with pytest.raises(Exception, match="Unknown scene 'vanishin'. Did you mean 'vanishing'"):
        scene_spec("vanishin")
