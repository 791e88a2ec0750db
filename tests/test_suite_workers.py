"""The suite's own split over workers (tests/conftest.py): whole files per worker, the add-on's
files together, so no module fixture or process-wide set-up is built twice."""

from __future__ import annotations

from tests.conftest import work_unit


def test_a_file_is_one_unit_and_the_addon_files_are_one_together():
    assert work_unit("tests/test_neck_fit.py::test_no_neck_no_fit") == "tests/test_neck_fit.py"
    assert work_unit("tests/test_neck_fit.py::test_x[a::b]") == "tests/test_neck_fit.py"
    assert work_unit("tests/test_hair_shell.py::test_no_outline_no_shell") != work_unit("tests/test_neck_fit.py::t")
    addon = {work_unit(f"tests/{name}::t") for name in ("test_addon_logic.py", "test_addon_render.py",
                                                        "test_addon_eevee.py")}
    assert addon == {"blender-addon"}
