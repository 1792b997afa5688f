"""Our cron slots against the Node library's (cron-parser's), run side by side.

Every difference must be one of the kept differences that ``docs/interop.md`` lists (see
``cron_diff.explain``). The random sample is new on each run; set ``CRON_DIFF_SEED`` to replay
one. Skips without ``node`` and ``npm`` (the ``node_modules`` fixture).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from tests.interop import cron_diff
from tests.interop.cron_diff import KEPT, KEPT_EXAMPLES, Case

DOCS = Path(__file__).parents[2] / "docs" / "interop.md"
SAMPLE = 400


def vector_inputs() -> tuple[dict[str, str], list[Case], list[list[str]]]:
    document = json.loads(cron_diff.VECTORS.read_text())
    cases = [
        Case(cron=v["cron"], timezone=v["timezone"], start=v["start"], count=len(v["slots"]))
        for v in document["vectors"]
    ]
    return document["versions"], cases, [v["slots"] for v in document["vectors"]]


def test_committed_vectors_are_what_both_sides_compute(node_modules: Path) -> None:
    versions, cases, slots = vector_inputs()
    node_versions, node = cron_diff.run_node(node_modules, cases)
    assert node_versions == versions
    stale = [
        (spec, result)
        for spec, result, want in zip(cases, node, slots, strict=True)
        if result["slots"] != want or "error" in result
    ]
    assert not stale, f"{len(stale)} vectors differ from cron-parser now, e.g. {stale[:3]}"
    kinds, unexplained = cron_diff.differences(cases, node)
    assert not unexplained, "\n".join(unexplained[:5])
    kept = [(kind, spec) for kind, spec in zip(kinds, cases, strict=True) if kind is not None]
    assert not kept, f"vectors must be agreements, these differ: {kept[:5]}"


def test_committed_vectors_are_all_the_generated_agreements(node_modules: Path) -> None:
    """The vectors are up to date with the generator: what it makes and the file leaves out
    is a kept difference or an expression both sides reject."""
    _, committed, _ = vector_inputs()
    generated = [spec for _, spec in cron_diff.vector_cases()]
    committed_keys = {json.dumps(spec, sort_keys=True) for spec in committed}
    assert committed_keys <= {json.dumps(spec, sort_keys=True) for spec in generated}
    left_out = [
        spec for spec in generated if json.dumps(spec, sort_keys=True) not in committed_keys
    ]
    _, node = cron_diff.run_node(node_modules, left_out)
    kinds, unexplained = cron_diff.differences(left_out, node)
    assert not unexplained, "\n".join(unexplained)
    rejected = [spec for spec, kind in zip(left_out, kinds, strict=True) if kind is None]
    assert all("error" in cron_diff.run_ours(spec) for spec in rejected), rejected


def test_each_kept_difference_has_a_documented_example(node_modules: Path) -> None:
    cases = [spec for _, spec in KEPT_EXAMPLES]
    _, node = cron_diff.run_node(node_modules, cases)
    for (kind, spec), result in zip(KEPT_EXAMPLES, node, strict=True):
        assert cron_diff.explain(spec, result, cron_diff.run_ours(spec)) == kind, spec
    assert {kind for kind, _ in KEPT_EXAMPLES} == set(KEPT)
    docs = DOCS.read_text()
    for kind, spec in KEPT_EXAMPLES:
        assert f"`{kind}`" in docs, kind
        assert f"`{spec['cron']}`" in docs, spec["cron"]


def test_random_expressions_differ_only_as_documented(node_modules: Path) -> None:
    seed = int(os.environ.get("CRON_DIFF_SEED") or random.randrange(2**32))
    cases = cron_diff.random_cases(random.Random(seed), SAMPLE)
    _, node = cron_diff.run_node(node_modules, cases)
    kinds, unexplained = cron_diff.differences(cases, node)
    assert not unexplained, f"CRON_DIFF_SEED={seed}:\n" + "\n".join(unexplained[:5])
    assert kinds.count(None) > SAMPLE // 2, f"CRON_DIFF_SEED={seed}: most cases should agree"
