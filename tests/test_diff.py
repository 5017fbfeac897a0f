"""apply_diff: strict and tolerant application of hand-written, difflib-made and real
release diffs, and the refusals (stage "parse" or "apply") of unusable ones."""

from __future__ import annotations

import difflib
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from elm.mutation.diff import DiffError, Hunk, apply_diff, extract_diff, parse_diff

RELEASE_DIFFS = Path(__file__).parent / "data" / "release_diffs"
_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@", re.MULTILINE)

SOURCE = """\
import math


def area(radius):
    return math.pi * radius ** 2


def perimeter(radius):
    return 2 * math.pi * radius
"""


# -- helpers --------------------------------------------------------------------------


def unified(before: str, after: str, context: int = 3, file_name: str = "program.py") -> str:
    """difflib's unified diff, with "No newline" markers where `diff -u` writes them."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"a/{file_name}",
        tofile=f"b/{file_name}",
        n=context,
    )
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def shift_line_numbers(diff: str, offset: int) -> str:
    def shifted(match: re.Match) -> str:
        old_start, old_count, new_start, new_count = match.groups()
        return (
            f"@@ -{max(0, int(old_start) + offset)},{old_count or 1}"
            f" +{max(0, int(new_start) + offset)},{new_count or 1} @@"
        )

    return _HEADER.sub(shifted, diff)


def drop_file_headers(diff: str) -> str:
    return "".join(
        line for line in diff.splitlines(keepends=True) if not line.startswith(("--- ", "+++ "))
    )


def drop_line_numbers(diff: str) -> str:
    return _HEADER.sub("@@ @@", diff)


def drop_no_newline_markers(diff: str) -> str:
    return "".join(line for line in diff.splitlines(keepends=True) if not line.startswith("\\"))


def refusal(source: str, diff: str, **options) -> DiffError:
    with pytest.raises(DiffError) as caught:
        apply_diff(source, diff, **options)
    return caught.value


# -- hand-written diffs ------------------------------------------------------------------

CHANGE_AREA = """\
--- a/program.py
+++ b/program.py
@@ -4,2 +4,3 @@
 def area(radius):
-    return math.pi * radius ** 2
+    squared = radius * radius
+    return math.pi * squared
"""
AREA_CHANGED = SOURCE.replace(
    "    return math.pi * radius ** 2\n",
    "    squared = radius * radius\n    return math.pi * squared\n",
)


def test_strict_application_of_a_hand_written_hunk():
    assert apply_diff(SOURCE, CHANGE_AREA, tolerant=False) == AREA_CHANGED


def test_file_headers_are_optional():
    assert apply_diff(SOURCE, drop_file_headers(CHANGE_AREA), tolerant=False) == AREA_CHANGED


@pytest.mark.parametrize("offset", [-3, -1, 1, 2, 40])
def test_wrong_line_numbers_are_applied_tolerantly(offset):
    diff = shift_line_numbers(CHANGE_AREA, offset)
    assert refusal(SOURCE, diff, tolerant=False).stage == "apply"
    assert apply_diff(SOURCE, diff) == AREA_CHANGED


def test_wrong_line_counts_are_applied_tolerantly():
    diff = CHANGE_AREA.replace("@@ -4,2 +4,3 @@", "@@ -4,7 +4,1 @@")
    assert "counts" in refusal(SOURCE, diff, tolerant=False).reason
    assert apply_diff(SOURCE, diff) == AREA_CHANGED


@pytest.mark.parametrize("header", ["@@ @@", "@@ -x +y @@", "@@@@"])
def test_header_without_readable_line_numbers_is_located(header):
    diff = drop_file_headers(CHANGE_AREA).replace("@@ -4,2 +4,3 @@", header)
    assert apply_diff(SOURCE, diff) == AREA_CHANGED


def test_model_style_continuation_with_leading_space_and_section_header():
    continuation = " @@ -4,2 +4,3 @@ import math\n" + CHANGE_AREA.split("@@\n", 1)[1]
    assert apply_diff(SOURCE, continuation) == AREA_CHANGED


def test_git_preamble_is_skipped():
    diff = "diff --git a/program.py b/program.py\nindex 3b18e51..a2c4d0f 100644\n" + CHANGE_AREA
    assert apply_diff(SOURCE, diff, tolerant=False) == AREA_CHANGED


@pytest.mark.parametrize(
    "junk",
    [
        "\nThis change squares the radius once.\n",
        "```\n",
        "Some prose\n@@ broken @@ header\n",
        "\n\n\n",
        "diff --git a/other.py b/other.py\n",
    ],
)
def test_junk_after_the_last_hunk_is_ignored(junk):
    assert apply_diff(SOURCE, CHANGE_AREA + junk) == AREA_CHANGED


@pytest.mark.parametrize(
    "ending",
    [
        "<|endoftext|>",
        "<|endoftext|>@@ -1,1 +1,1 @@\n-import math\n+import cmath\n",
        "<NME> program.py\n<BEF> import math\n<MSG> other\n<DFF> @@ -1 +1 @@\n-import math\n+import os\n",
        "<NME>",
    ],
)
def test_a_new_record_or_end_of_text_ends_the_diff(ending):
    assert apply_diff(SOURCE, CHANGE_AREA + ending) == AREA_CHANGED


def test_end_of_text_in_the_middle_of_the_last_line():
    diff = CHANGE_AREA[:-1] + "<|endoftext|>garbage"
    assert apply_diff(SOURCE, diff) == AREA_CHANGED


def test_diff_text_without_final_newline():
    assert apply_diff(SOURCE, CHANGE_AREA.rstrip("\n")) == AREA_CHANGED


def test_prompt_and_continuation_together():
    text = "<NME> program.py\n<BEF> " + SOURCE + "\n<MSG> Square once\n<DFF>" + CHANGE_AREA + "<|endoftext|>"
    assert apply_diff(SOURCE, text) == AREA_CHANGED


def test_extract_diff_cuts_at_the_next_record():
    continuation = " @@ -1 +1 @@\n-a\n+b\n<NME> next.py\n<BEF> x\n"
    assert extract_diff(continuation) == " @@ -1 +1 @@\n-a\n+b\n"
    assert extract_diff("-a\n+b<|endoftext|>\n<NME>") == "-a\n+b"
    assert extract_diff("-a\n+b</s>", eos_tokens=["</s>"]) == "-a\n+b"


def test_blank_line_stands_for_an_empty_context_line():
    diff = "@@ -4,3 +4,3 @@\n def area(radius):\n-    return math.pi * radius ** 2\n+    return math.pi * radius * radius\n\n"
    expected = SOURCE.replace("radius ** 2", "radius * radius")
    assert apply_diff(SOURCE, diff, tolerant=False) == expected
    # Counts say the hunk is done, but more body lines follow the blank one.
    diff = "@@ -5,1 +5,1 @@\n-    return math.pi * radius ** 2\n+    return 0\n\n \n def perimeter(radius):\n"
    assert apply_diff(SOURCE, diff) == SOURCE.replace("math.pi * radius ** 2", "0")


def test_context_with_different_trailing_whitespace_keeps_the_source_line():
    source = "def f():   \n    x = 1\n    return x\n"
    diff = "@@ -1,3 +1,3 @@\n def f():\n-    x = 1\n+    x = 2\n     return x\n"
    assert refusal(source, diff, tolerant=False).stage == "apply"
    assert apply_diff(source, diff) == "def f():   \n    x = 2\n    return x\n"


def test_form_feed_is_not_a_line_break():
    source = "a = 1\n\x0c\nb = 2\n"
    assert apply_diff(source, "@@ -3 +3 @@\n-b = 2\n+b = 3\n", tolerant=False) == "a = 1\n\x0c\nb = 3\n"


def test_only_the_first_file_of_a_multi_file_diff_is_applied():
    second = "--- a/other.py\n+++ b/other.py\n@@ -1 +1 @@\n-import math\n+import os\n"
    assert apply_diff(SOURCE, CHANGE_AREA + second) == AREA_CHANGED


def test_truncated_last_hunk_applies_what_was_written():
    diff = "@@ -8,2 +8,4 @@\n def perimeter(radius):\n-    return 2 * math.pi * radius\n+    diameter = 2 * radius\n"
    assert refusal(SOURCE, diff, tolerant=False).stage == "apply"
    assert apply_diff(SOURCE, diff) == SOURCE.replace("    return 2 * math.pi * radius\n", "    diameter = 2 * radius\n")


def test_hunks_written_out_of_order_are_placed_by_content():
    first = "@@ -1 +1 @@\n-import math\n+import math as m\n"
    last = "@@ -9 +9 @@\n-    return 2 * math.pi * radius\n+    return 2 * m.pi * radius\n"
    expected = SOURCE.replace("import math\n", "import math as m\n").replace("2 * math.pi", "2 * m.pi")
    assert apply_diff(SOURCE, first + last, tolerant=False) == expected
    assert refusal(SOURCE, last + first, tolerant=False).stage == "apply"
    assert apply_diff(SOURCE, last + first) == expected


def test_overlapping_hunks_are_refused():
    one = "@@ -4,2 +4,2 @@\n def area(radius):\n-    return math.pi * radius ** 2\n+    return 1\n"
    two = "@@ -5,1 +5,1 @@\n-    return math.pi * radius ** 2\n+    return 2\n"
    error = refusal(SOURCE, one + two)
    assert error.stage == "apply" and "overlap" in error.reason


# -- refusals -----------------------------------------------------------------------------

REPEATED = """\
def first():
    value = 1
    return value


def second():
    value = 1
    return value
"""


def test_ambiguous_pre_image_is_refused():
    diff = "@@ -99,2 +99,2 @@\n-    value = 1\n+    value = 2\n     return value\n"
    error = refusal(REPEATED, diff)
    assert error.stage == "apply" and "ambiguous" in error.reason


def test_repeated_pre_image_with_right_line_numbers_is_applied_where_it_says():
    diff = "@@ -7,2 +7,2 @@\n-    value = 1\n+    value = 2\n     return value\n"
    assert apply_diff(REPEATED, diff) == REPEATED[::-1].replace("1 = eulav", "2 = eulav", 1)[::-1]


def test_an_earlier_hunk_disambiguates_a_later_one():
    diff = (
        "@@ -50 +50 @@\n-def second():\n+def second_one():\n"
        "@@ -60,2 +60,2 @@\n-    value = 1\n+    value = 2\n     return value\n"
    )
    expected = REPEATED.replace("def second():\n    value = 1", "def second_one():\n    value = 2")
    assert apply_diff(REPEATED, diff) == expected


@pytest.mark.parametrize(
    "diff",
    [
        "@@ -4,2 +4,2 @@\n def area(radius):\n-    return math.tau * radius\n+    return 0\n",
        "@@ -1 +1 @@\n-import maths\n+import math\n",
    ],
)
def test_absent_pre_image_is_refused(diff):
    error = refusal(SOURCE, diff)
    assert error.stage == "apply" and "not found" in error.reason


@pytest.mark.parametrize(
    "text",
    [
        "",
        "<|endoftext|>",
        "I could not think of a change.\n",
        "-import math\n+import cmath\n",
        "--- a/program.py\n+++ b/program.py\n",
        "@@ -1,2 +1,2 @@\n import math\n \n",
        "@@ -1,2 +1,2 @@\n",
    ],
)
def test_no_usable_hunk_is_a_parse_failure(text):
    error = refusal(SOURCE, text)
    assert error.stage == "parse"
    with pytest.raises(DiffError):
        parse_diff(text)


def test_diff_error_names_its_stage_and_survives_pickling():
    error = DiffError("apply", "hunk 1: pre-image not found in the source")
    assert str(error) == "apply: hunk 1: pre-image not found in the source"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.stage, copy.reason) == ("apply", error.reason)


def test_parse_diff_reads_header_numbers_and_body():
    [hunk] = parse_diff(CHANGE_AREA)
    assert isinstance(hunk, Hunk)
    assert (hunk.old_start, hunk.old_count, hunk.new_start, hunk.new_count) == (4, 2, 4, 3)
    assert hunk.before == ["def area(radius):\n", "    return math.pi * radius ** 2\n"]
    assert hunk.after[1:] == ["    squared = radius * radius\n", "    return math.pi * squared\n"]


# -- edges of the file ------------------------------------------------------------------


@pytest.mark.parametrize("context", [0, 1, 3])
@pytest.mark.parametrize(
    "after",
    [
        "# header comment\n" + SOURCE,
        SOURCE + "\n\ndef volume(radius):\n    return 4 / 3 * math.pi * radius ** 3\n",
        "",
        SOURCE.replace("import math\n", ""),
        SOURCE.replace("    return 2 * math.pi * radius\n", ""),
    ],
    ids=["add-at-start", "add-at-end", "delete-everything", "delete-first-line", "delete-last-line"],
)
def test_edges_of_the_file(after, context):
    diff = unified(SOURCE, after, context)
    assert apply_diff(SOURCE, diff, tolerant=False) == after
    if context > 0 or after == "":
        assert apply_diff(SOURCE, shift_line_numbers(diff, 3)) == after


def test_adding_to_an_empty_source():
    diff = "@@ -0,0 +1,2 @@\n+def main():\n+    return 1\n"
    assert apply_diff("", diff, tolerant=False) == "def main():\n    return 1\n"
    assert apply_diff("", shift_line_numbers(diff, 4)) == "def main():\n    return 1\n"


def test_zero_context_hunks_apply_strictly():
    after = SOURCE.replace("import math\n", "import math\nimport cmath\n").replace("** 2", "** 3")
    after = after.replace("def perimeter", "def circumference")
    diff = unified(SOURCE, after, context=0)
    assert len(parse_diff(diff)) == 3
    assert apply_diff(SOURCE, diff, tolerant=False) == after


def test_zero_context_insertion_with_impossible_line_number_is_refused():
    diff = "@@ -50,0 +51 @@\n+import cmath\n"
    error = refusal(SOURCE, diff)
    assert error.stage == "apply" and "no context" in error.reason


def test_zero_context_replacement_is_located_by_its_deleted_lines():
    diff = "@@ -70 +70 @@\n-    return 2 * math.pi * radius\n+    return math.tau * radius\n"
    assert apply_diff(SOURCE, diff) == SOURCE.replace("2 * math.pi * radius", "math.tau * radius")


# -- final newline ----------------------------------------------------------------------

NO_FINAL_NEWLINE = "x = 1\ny = 2\nz = 3"


def test_no_newline_markers_are_honoured_strictly():
    after = "x = 1\ny = 2\nz = 4"
    diff = unified(NO_FINAL_NEWLINE, after)
    assert "\\ No newline at end of file" in diff
    assert apply_diff(NO_FINAL_NEWLINE, diff, tolerant=False) == after
    added_newline = unified(NO_FINAL_NEWLINE, NO_FINAL_NEWLINE + "\n")
    assert apply_diff(NO_FINAL_NEWLINE, added_newline, tolerant=False) == NO_FINAL_NEWLINE + "\n"
    removed_newline = unified(SOURCE, SOURCE[:-1])
    assert apply_diff(SOURCE, removed_newline, tolerant=False) == SOURCE[:-1]


@pytest.mark.parametrize(
    "after",
    ["x = 1\ny = 2\nz = 4", "x = 1\ny = 2\nz = 3\nw = 4", "x = 1\ny = 20\nz = 3", "x = 1\ny = 2"],
)
def test_missing_no_newline_markers_keep_the_source_ending(after):
    diff = drop_no_newline_markers(unified(NO_FINAL_NEWLINE, after, context=1))
    assert apply_diff(NO_FINAL_NEWLINE, diff) == after


def test_markers_on_both_sides_of_a_source_that_has_a_final_newline():
    source = NO_FINAL_NEWLINE + "\n"
    diff = "@@ -3 +3 @@\n-z = 3\n\\ No newline at end of file\n+z = 4\n\\ No newline at end of file\n"
    assert refusal(source, diff, tolerant=False).stage == "apply"
    assert apply_diff(source, diff) == "x = 1\ny = 2\nz = 4\n"


def test_marker_on_a_line_that_is_not_last_does_not_join_lines():
    diff = "@@ -1,2 +1,2 @@\n-x = 1\n+x = 10\n\\ No newline at end of file\n y = 2\n"
    assert apply_diff(NO_FINAL_NEWLINE, diff) == "x = 10\ny = 2\nz = 3"


# -- line endings ---------------------------------------------------------------------


def test_crlf_source_with_lf_diff_keeps_crlf():
    crlf = SOURCE.replace("\n", "\r\n")
    assert apply_diff(crlf, CHANGE_AREA) == AREA_CHANGED.replace("\n", "\r\n")


def test_crlf_source_with_crlf_diff():
    crlf = SOURCE.replace("\n", "\r\n")
    diff = unified(crlf, AREA_CHANGED.replace("\n", "\r\n"))
    assert "\r\n" in diff
    assert apply_diff(crlf, diff, tolerant=False) == AREA_CHANGED.replace("\n", "\r\n")
    assert apply_diff(crlf, shift_line_numbers(diff, 2)) == AREA_CHANGED.replace("\n", "\r\n")


def test_lf_source_with_crlf_diff():
    assert apply_diff(SOURCE, CHANGE_AREA.replace("\n", "\r\n"), tolerant=False) == AREA_CHANGED


def test_mixed_line_endings_are_patched_byte_for_byte():
    source = "a = 1\r\nb = 2\nc = 3\r\n"
    after = "a = 1\r\nb = 20\nc = 3\r\n"
    assert apply_diff(source, unified(source, after), tolerant=False) == after


# -- real diffs between released versions -----------------------------------------------

CASES = json.loads((RELEASE_DIFFS / "manifest.json").read_text())["cases"]


def _release_case(case: dict) -> tuple[str, str, str]:
    folder = RELEASE_DIFFS / case["folder"]
    read = lambda name: (folder / name).read_bytes().decode("utf-8")  # noqa: E731 - exact bytes
    return read("before.py.txt"), read("after.py.txt"), read("change.diff")


@pytest.mark.parametrize("case", CASES, ids=[case["folder"] for case in CASES])
def test_release_diff_applies_strictly(case):
    before, after, diff = _release_case(case)
    assert diff.startswith(f"--- a/{case['file']}\n+++ b/{case['file']}\n")
    assert apply_diff(before, diff, tolerant=False) == after
    assert apply_diff(before, drop_file_headers(diff), tolerant=False) == after


@pytest.mark.parametrize("offset", [-7, -2, -1, 1, 3, 25])
@pytest.mark.parametrize("case", CASES, ids=[case["folder"] for case in CASES])
def test_release_diff_with_shifted_line_numbers(case, offset):
    before, after, diff = _release_case(case)
    shifted = shift_line_numbers(diff, offset)
    assert refusal(before, shifted, tolerant=False).stage == "apply"
    assert apply_diff(before, shifted) == after
    assert apply_diff(before, drop_file_headers(shifted)) == after


@pytest.mark.parametrize("case", CASES, ids=[case["folder"] for case in CASES])
def test_release_diff_without_any_headers(case):
    before, after, diff = _release_case(case)
    assert apply_diff(before, drop_line_numbers(drop_file_headers(diff))) == after


def test_release_diffs_have_several_hunks_in_all():
    hunks = sum(len(parse_diff(_release_case(case)[2])) for case in CASES)
    assert hunks >= 30


# -- randomly mutated sources -----------------------------------------------------------

_CORPUS = [
    line
    for case in CASES
    for line in (RELEASE_DIFFS / case["folder"] / "before.py.txt").read_text().splitlines(keepends=True)
]


def _mutated_pair(rng: np.random.Generator) -> tuple[str, str]:
    """A window of real Python lines and a copy with random inserts, deletes, replaces."""
    length = int(rng.integers(5, 120))
    start = int(rng.integers(0, len(_CORPUS) - length))
    before = _CORPUS[start:start + length]
    after = list(before)
    for _ in range(int(rng.integers(1, 7))):
        kind = rng.choice(["insert", "delete", "replace"])
        where = int(rng.integers(0, len(after) + (kind == "insert")))
        new_line = _CORPUS[int(rng.integers(0, len(_CORPUS)))]
        if kind == "insert":
            after.insert(where, new_line)
        elif after and kind == "delete":
            del after[where]
        elif after:
            after[where] = new_line
    before_text, after_text = "".join(before), "".join(after)
    if rng.random() < 0.2:  # some files end without a newline
        before_text, after_text = before_text.rstrip("\n"), after_text.rstrip("\n")
    return before_text, after_text


@pytest.mark.parametrize("context", [0, 1, 2, 3, 5])
def test_difflib_diffs_of_random_mutations_apply_strictly(context):
    rng = np.random.default_rng(1000 + context)
    for _ in range(150):
        before, after = _mutated_pair(rng)
        if before == after:
            continue
        diff = unified(before, after, context)
        assert apply_diff(before, diff, tolerant=False) == after
        assert apply_diff(before, drop_file_headers(diff), tolerant=False) == after


@pytest.mark.parametrize("context", [1, 2, 3, 5])
def test_difflib_diffs_of_random_mutations_with_wrong_line_numbers(context):
    """Tolerant application gives the target, or refuses; it never guesses. (Where the
    shifted numbers happen to point at an identical pre-image, the strict application
    there is what the diff says.)"""
    rng = np.random.default_rng(2000 + context)
    outcomes = {"target": 0, "refused": 0}
    for _ in range(150):
        before, after = _mutated_pair(rng)
        if before == after:
            continue
        offset = int(rng.choice([-5, -2, -1, 1, 2, 4, 9]))
        diff = shift_line_numbers(unified(before, after, context), offset)
        if rng.random() < 0.5:
            diff = drop_file_headers(diff)
        try:
            result = apply_diff(before, diff)
        except DiffError as error:
            assert error.stage == "apply" and "ambiguous" in error.reason, error
            outcomes["refused"] += 1
            continue
        if result != after:
            assert apply_diff(before, diff, tolerant=False) == result
        else:
            outcomes["target"] += 1
    assert outcomes["target"] >= 0.8 * sum(outcomes.values()), outcomes
