#!/usr/bin/env python3
"""Checks that scripts/bench.py writes only its own marked sections and keeps every other line.

usage: python3 scripts/check_bench_sections.py

Runs bench.py's `write_sections` on copies (in a temporary directory) of docs/bench-generated.md and
BENCHMARKS.md, and on made-up files: a section is replaced in place, a missing one is added at the end, the
text outside the replaced sections is kept byte for byte, a second run gives the same file, and a file with a
broken or doubled marker is refused and left as it was. Runs no benchmark. Prints `bench sections ok: N checks`
and exits 0, or the first failure and exits 1. Python 3 standard library only.
"""

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import bench  # noqa: E402  (only its functions: importing it runs nothing)

checks = 0


def check(condition, what):
    global checks
    checks += 1
    if not condition:
        sys.exit(f"bench sections: FAILED: {what}")


def outside(text, names):
    """text with the named sections' bodies removed (markers kept): what write_sections must not change."""
    for name in names:
        begin, end = bench.BEGIN.format(name), bench.END.format(name)
        start, stop = text.find(begin), text.find(end)
        if start >= 0:
            text = text[:start + len(begin)] + text[stop:]
    return text


def main():
    work = Path(tempfile.mkdtemp(prefix="bench-sections-"))
    try:
        # The real file, with hand-written lines added around and between its sections.
        generated = work / "bench-generated.md"
        original = (ROOT / "docs" / "bench-generated.md").read_text()
        original = original.replace("<!-- bench.py: begin scale -->",
                                    "A hand-written note between two sections.\n\n<!-- bench.py: begin scale -->")
        original += "\nA hand-written note at the end.\n"
        generated.write_text(original)
        bench.write_sections(generated, {"ingest": ["## ingest", "", "| a | b |", "| 1 | 2 |"],
                                         "held-out": ["## held out", "new body"]})
        after = generated.read_text()
        check(outside(after, ["ingest", "held-out"]) == outside(original, ["ingest", "held-out"]),
              "the text outside the two written sections is unchanged")
        check("| a | b |\n| 1 | 2 |" in after and "new body" in after, "the new bodies are in")
        check(after.count("(Not run yet") == original.count("(Not run yet") - 2, "the old bodies are gone")
        check("A hand-written note between two sections." in after and after.endswith("note at the end.\n"),
              "hand-written lines are kept")
        bench.write_sections(generated, {"ingest": ["## ingest", "", "| a | b |", "| 1 | 2 |"],
                                         "held-out": ["## held out", "new body"]})
        check(generated.read_text() == after, "a second run with the same figures gives the same file")

        # A section the file does not have yet is added at the end; nothing before it changes.
        bench.write_sections(generated, {"python": ["## Python", "x"]})
        again = generated.read_text()
        check(again.startswith(after.rstrip("\n")), "adding a section keeps the whole file before it")
        check(again.endswith("<!-- bench.py: begin python -->\n## Python\nx\n<!-- bench.py: end python -->\n"),
              "the missing section is added at the end")

        # BENCHMARKS.md has no markers: writing into a copy of it deletes nothing.
        copy = work / "BENCHMARKS.md"
        shutil.copyfile(ROOT / "BENCHMARKS.md", copy)
        before = copy.read_text()
        bench.write_sections(copy, {"scale": ["## Scale", "rows"]})
        check(copy.read_text().startswith(before.rstrip("\n")), "a file without markers keeps every line")

        # A new file starts with bench-generated.md's header.
        fresh = work / "new.md"
        bench.write_sections(fresh, {"setup": ["## set-up"]})
        check(fresh.read_text().startswith(bench.NEW_FILE), "a new file gets the header")

        # Broken markers are refused and the file is left as it was.
        begin, end = bench.BEGIN.format("ingest"), bench.END.format("ingest")
        for broken, why in [(f"{begin}\nold\n{end}\n{begin}\nold\n{end}\n", "a doubled section"),
                            (f"text\n{end}\n", "an end without its begin"),
                            (f"{end}\n{begin}\n", "an end before its begin"),
                            (f"{begin}\nold\n", "a begin without its end")]:
            bad = work / "bad.md"
            bad.write_text(broken)
            try:
                bench.write_sections(bad, {"ingest": ["new"]})
                check(False, f"{why} is refused")
            except ValueError:
                check(bad.read_text() == broken, f"{why} is refused and the file left as it was")
        try:
            bench.replace_section("", "ingest", f"a body holding {begin}")
            check(False, "a body holding a marker is refused")
        except ValueError:
            check(True, "a body holding a marker is refused")
        check(not list(work.glob("*.tmp")), "no temporary file is left")
    finally:
        shutil.rmtree(work)
    print(f"bench sections ok: {checks} checks")


if __name__ == "__main__":
    main()
