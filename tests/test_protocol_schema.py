"""shared/protocol_schema.py (what the type fuzz walks) and docs/protocol.md (what people
read) describe the same methods and params."""

from __future__ import annotations

import re

from shared.protocol import METHODS
from shared.protocol_schema import CAMERA, METHOD_PARAMS
from tests.server_harness import REPO_ROOT


def method_sections(text: str) -> dict[str, str]:
    """method name -> the text of its '### 4.x' or '####' section."""
    sections, current, lines = {}, None, []
    for line in text.splitlines():
        heading = re.match(r"#{3,4} (?:4\.\d+ )?(.*)", line)
        if heading or line.startswith("## "):
            if current:
                for name in current:
                    sections[name] = sections.get(name, "") + "\n".join(lines)
            current = re.findall(r"`([a-z]+\.[a-z]+)`", heading.group(1)) if heading else None
            lines = []
        else:
            lines.append(line)
    return sections


def test_every_method_and_param_of_the_schema_is_in_the_protocol_document():
    text = (REPO_ROOT / "docs" / "protocol.md").read_text()
    sections = method_sections(text)
    assert set(METHOD_PARAMS) == set(METHODS)
    for method, fields in METHOD_PARAMS.items():
        assert method in sections, f"docs/protocol.md has no section for {method}"
        for name in fields:
            assert f"`{name}`" in sections[method] or (method == "job.result" and f"`\"{name}\"" in text), \
                f"docs/protocol.md does not describe {method}'s param {name!r}"
    for name in CAMERA.fields:
        assert f'"{name}"' in text, f"the camera shape in docs/protocol.md lacks {name!r}"
