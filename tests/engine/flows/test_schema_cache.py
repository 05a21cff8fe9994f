"""The cache of flow files jsonschema has passed: a file is skipped only by its exact content;
an edited file is validated again (and refused if it is wrong); a wrong file is never kept."""

from __future__ import annotations

from pathlib import Path

from engine.flows.schema import ValidFlowCache
from engine.flows.yamlsrc import parse_yaml
from engine.load import load_flow_set
from engine.reload import FlowHolder

FLOWS = Path(__file__).resolve().parents[3] / "flows"


def _entries(cache: ValidFlowCache) -> set[str]:
    return {p.name for p in cache.directory.iterdir()} if cache.directory.is_dir() else set()


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_set_validated_once_loads_the_same_from_the_cache(flows: Path, tmp_path: Path) -> None:
    cache = ValidFlowCache(tmp_path / "cache")
    first = load_flow_set([flows], schema_cache=cache)
    assert first.flow_set is not None
    files = sorted(flows.glob("*.yaml"))
    assert len(_entries(cache)) == len(files)  # one per file, each passed by jsonschema
    again = load_flow_set([flows], schema_cache=cache)
    assert again.flow_set is not None and again.flow_set.version == first.flow_set.version
    assert [str(f) for f in again.findings] == [str(f) for f in first.findings]
    assert len(_entries(cache)) == len(files)


async def test_an_edited_file_is_validated_again(flows: Path, tmp_path: Path) -> None:
    cache = ValidFlowCache(tmp_path / "cache")
    holder = FlowHolder([flows], schema_cache=cache)
    first = holder.load()
    known = _entries(cache)
    main = flows / "main.yaml"
    # A key the schema does not allow: only jsonschema can tell (the YAML is fine).
    _edit(main, "    footer: false\n", "    footer: false\n    colour: red\n")
    result = await holder.reload()
    assert result.flow_set is None and holder.current is first
    assert any(f.code == "F002" and "colour" in f.message and f.path.endswith("main.yaml") for f in result.errors)
    assert _entries(cache) == known  # a file with errors is never kept
    # Valid again, but not as before: validated, and kept under its new content.
    _edit(main, "    colour: red\n", "")
    _edit(main, "Главное меню IT-поддержки РАНХиГС.", "Меню поддержки.")
    result = await holder.reload()
    assert result.flow_set is not None and not result.errors
    assert len(_entries(cache) - known) == 1
    # Back to the content validated first: known, nothing new.
    _edit(main, "Меню поддержки.", "Главное меню IT-поддержки РАНХиГС.")
    result = await holder.reload()
    assert result.flow_set is not None and result.flow_set.version == first.version
    assert len(_entries(cache) - known) == 1


def test_an_entry_is_named_by_the_content_not_the_place(tmp_path: Path) -> None:
    cache = ValidFlowCache(tmp_path / "cache")
    text = (FLOWS / "main.yaml").read_text(encoding="utf-8")
    here, elsewhere = parse_yaml(text, "main.yaml")[0], parse_yaml(text, "/elsewhere/copy.yaml")[0]
    changed = parse_yaml(text.replace("РАНХиГС.", "РАНХиГС!", 1), "main.yaml")[0]
    assert here is not None and elsewhere is not None and changed is not None
    assert cache.key("flow", here) == cache.key("flow", elsewhere)
    assert cache.key("flow", here) != cache.key("flow", changed)
    assert cache.key("flow", here) != cache.key("catalog", here)


def test_an_unwritable_cache_only_costs_the_saving(flows: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("", encoding="utf-8")
    cache = ValidFlowCache(blocker / "cache")
    assert load_flow_set([flows], schema_cache=cache).flow_set is not None
    assert load_flow_set([flows], schema_cache=cache).flow_set is not None
