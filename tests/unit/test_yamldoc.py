from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from reconciler.spec import SpecError, load
from reconciler.spec.yamldoc import MAX_EXPANDED_NODES, parse


def test_positions_point_at_keys_and_items() -> None:
    documents, problems = parse("f.yaml", b"a: 1\nlist:\n  - x: 2\n    y: [3]\n---\nb: 2\n")
    assert problems == []
    first, second = documents
    assert first.marks.locate(("list", 0, "y")) == (4, 5)
    assert first.marks.locate(("list", 0, "y", 0)) == (4, 9)
    assert first.marks.locate(("list", 0, "missing")) == (3, 5)
    assert second.marks.locate(("b",)) == (6, 1)


def test_duplicate_keys_are_errors() -> None:
    _, problems = parse("f.yaml", b"a:\n  b: 1\n  b: 2\n")
    assert [str(p) for p in problems] == ["f.yaml:3:3: a.b: duplicate key 'b' (first at line 2)"]


def test_merge_keys_are_not_duplicates() -> None:
    documents, problems = parse("f.yaml", b"base: &b {x: 1}\nthing:\n  <<: *b\n  x: 2\n")
    assert problems == []
    assert documents[0].data["thing"] == {"x": 2}


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    _, problems = parse("bomb.yaml", "\n".join(lines).encode())
    assert len(problems) == 1
    assert f"more than {MAX_EXPANDED_NODES} nodes" in problems[0].message


def test_recursive_alias_is_refused() -> None:
    _, problems = parse("r.yaml", b"a: &a [*a]\n")
    assert [p.message for p in problems] == ["recursive YAML alias"]


def test_syntax_error_has_position() -> None:
    _, problems = parse("bad.yaml", b"a: [1, 2\nb: 3\n")
    assert len(problems) == 1
    assert problems[0].line == 2
    assert problems[0].message.startswith("invalid YAML")


def test_python_tags_are_not_constructed() -> None:
    _, problems = parse("evil.yaml", b"a: !!python/object/apply:os.system ['true']\n")
    assert [str(p) for p in problems] == [
        "evil.yaml:1:4: a: YAML tag '!!python/object/apply:os.system' is not supported: "
        "only strings, numbers, booleans, lists and mappings"
    ]


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    _, problems = parse("deep.yaml", b"[" * 20000 + b"]" * 20000)
    assert problems


json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)


def _assert_load_answers(files: dict[str, bytes]) -> None:
    try:
        load(files)
    except SpecError as err:
        problems = err.problems
    else:
        return
    assert problems, "a SpecError always carries problems"
    for problem in problems:
        assert problem.file in files
        assert problem.line >= 1
        assert problem.column >= 1


@given(st.binary(max_size=300))
def test_loader_never_raises_on_arbitrary_bytes(content: bytes) -> None:
    _assert_load_answers({"mico.yaml": content})


@given(st.text(max_size=300))
def test_loader_never_raises_on_arbitrary_text(content: str) -> None:
    _assert_load_answers({"mico.yaml": content.encode()})


@given(json_values)
def test_loader_never_raises_on_arbitrary_yaml_structures(value: Any) -> None:
    _assert_load_answers({"mico.yaml": yaml.safe_dump(value).encode()})


@given(st.dictionaries(st.sampled_from(["apiVersion", "services", "applications", "extra"]), json_values))
def test_loader_never_raises_on_document_like_structures(value: dict[str, Any]) -> None:
    value.setdefault("apiVersion", "ust.mico/v1")
    _assert_load_answers({"mico.yaml": yaml.safe_dump(value).encode()})


def test_scalars_are_resolved_by_the_yaml_12_core_schema() -> None:
    text = b"a: 0x1F\nb: 1.5\nc: -.inf\nd: True\ne: ~\nf: +12\ng: 2020-01-01\nh: '0120'\ni: 'off'\nj: =\n"
    (document,), problems = parse("f.yaml", text)
    assert problems == []
    assert document.data == {
        "a": 31,
        "b": 1.5,
        "c": float("-inf"),
        "d": True,
        "e": None,
        "f": 12,
        "g": "2020-01-01",
        "h": "0120",
        "i": "off",
        "j": "=",
    }


def test_a_document_with_a_bad_node_is_still_read_for_its_other_problems() -> None:
    documents, problems = parse("f.yaml", b"a: !!int x\nb:\n  c: !foo 1\n")
    assert [(p.line, p.column, p.field) for p in problems] == [(1, 4, "a"), (3, 6, "b.c")]
    assert documents[0].data == {"a": "x", "b": {"c": "1"}}
    assert documents[0].reported == {("a",), ("b", "c")}


def test_merged_keys_yield_to_written_ones_and_earlier_merges_to_later_ones() -> None:
    text = b"a: &a {x: 1, y: 1}\nb: &b {x: 2, z: 2}\nc:\n  <<: [*a, *b]\n  y: 3\n"
    (document,), problems = parse("f.yaml", text)
    assert problems == []
    assert document.data["c"] == {"x": 1, "y": 3, "z": 2}
    assert document.data == yaml.load(text, Loader=yaml.CSafeLoader)


def test_an_alias_is_a_copy_at_each_place_it_is_used() -> None:
    (document,), _ = parse("f.yaml", b"a: &a {x: [1]}\nb: *a\n")
    document.data["b"]["x"].append(2)
    assert document.data["a"] == {"x": [1]}


@given(json_values)
def test_a_plain_tree_reads_as_pyyaml_reads_it_with_every_position_found(value: Any) -> None:
    """Where YAML 1.1 and 1.2 agree (no problem reported), the one-pass walk builds what PyYAML's
    own constructor builds, and every path in it has a position, kept or found again."""
    text = yaml.safe_dump({"root": value}).encode()
    kept, problems = parse("f.yaml", text, keep_positions=True)
    if problems:
        return
    found_again, _ = parse("f.yaml", text)
    assert kept[0].data == found_again[0].data == yaml.load(text, Loader=yaml.CSafeLoader)
    assert dict(found_again[0].marks.positions) == dict(kept[0].marks.positions)

    def paths(node: Any, path: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        children = (
            node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        )
        return [path] + [p for key, child in children for p in paths(child, (*path, key))]

    assert set(paths(kept[0].data, ())) <= set(kept[0].marks.positions)
