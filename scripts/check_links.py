#!/usr/bin/env python3
"""Checks the relative links of every Markdown file in the repository.

usage: python3 scripts/check_links.py [ROOT]

For every *.md file under ROOT (default: the repository this script is in), leaving out target/, fuzz/ and .git,
every relative link, `[text](path)`, `[text](path#anchor)`, `[text](#anchor)`, an image's `![alt](path)` or a
reference definition `[name]: path`, must name a file or directory that exists, and its anchor, when the target
is a Markdown file, must be the slug of one of that file's headings (or an HTML id/name in it). Slugs follow
GitHub's rules: the heading's text as rendered, lowercased, every character that is not a letter, digit, space,
hyphen or underscore removed, spaces turned into hyphens; a repeated heading gets -1, -2, ... Links inside code
(fenced blocks and `inline code`) are not links and are skipped, as are absolute URLs (http:, mailto:, ...).

Prints `FILE:LINE: broken link ...` for each broken link and exits 1; otherwise prints `links ok: N checked`
and exits 0. Python 3 standard library only.
"""

import os
import re
import sys
from pathlib import Path
from urllib.parse import unquote

EXCLUDED_DIRS = {"target", "fuzz", ".git"}

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
# A code span: a run of backticks, then the shortest text (not crossing a blank line) closed by a run of the
# same length.
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.S)
# An inline link or image: [text](destination "optional title"). The text may hold one level of brackets and
# span lines; the destination is <...> or has no spaces (balanced parentheses allowed).
INLINE_LINK = re.compile(
    r"(!?)\[((?:[^\[\]\\]|\\.|\[(?:[^\[\]\\]|\\.)*\])*)\]"
    r"\(\s*(<[^<>\n]*>|(?:[^\s()\\]|\\.|\((?:[^\s()\\]|\\.)*\))*)"
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*\)"
)
REFERENCE_DEF = re.compile(r"^ {0,3}\[((?:[^\[\]\\]|\\.)+)\]:[ \t]*(<[^<>\n]*>|\S+)", re.M)
HTML_ID = re.compile(r"<[a-zA-Z][^>]*?\s(?:id|name)\s*=\s*[\"']([^\"']+)[\"']")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files(root):
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS)
        for name in sorted(files):
            if name.endswith(".md"):
                yield Path(directory) / name


def blank(text):
    """The same text with every character but newlines turned into spaces: keeps offsets and line numbers."""
    return re.sub(r"[^\n]", " ", text)


def without_code(text, spans=True):
    """The text with fenced code blocks (and code spans, if spans) blanked out, line numbers and offsets kept."""
    lines = text.split("\n")
    out = []
    fence = None
    for line in lines:
        if fence is None:
            m = FENCE.match(line)
            if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                fence = m.group(1)
                out.append(blank(line))
            else:
                out.append(line)
        else:
            m = FENCE.match(line)
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not m.group(2).strip():
                fence = None
            out.append(blank(line))
    text = "\n".join(out)
    return CODE_SPAN.sub(lambda m: blank(m.group(0)), text) if spans else text


def rendered(heading):
    """A heading's text roughly as GitHub renders it: code spans' text, links' text, no emphasis or HTML."""
    text = re.sub(r"(`+)(.+?)\1", lambda m: m.group(2).strip(), heading)
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"\\(.)", r"\1", text)
    text = text.replace("*", "")
    text = re.sub(r"(?<!\w)_+|_+(?!\w)", "", text)
    text = re.sub(r"~~", "", text)
    return text.strip()


def slug(heading):
    text = rendered(heading).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path, cache={}):
    """Every anchor a Markdown file defines: its headings' slugs (duplicates numbered) and HTML ids and names."""
    if path in cache:
        return cache[path]
    text = path.read_text(encoding="utf-8", errors="replace")
    code_free = without_code(text)
    # Headings are read from the text with only the fenced blocks blanked: their code spans are part of the slug.
    lines = without_code(text, spans=False).split("\n")
    seen = {}
    found = set()

    def add(heading):
        base = slug(heading)
        n = seen.get(base, 0)
        name = base if n == 0 else f"{base}-{n}"
        # GitHub numbers a repeat past any heading that already has that name.
        while name in found:
            n += 1
            name = f"{base}-{n}"
        seen[base] = n + 1
        found.add(name)

    previous = ""
    for line in lines:
        m = ATX.match(line)
        if m:
            add(m.group(2) or "")
            previous = ""
            continue
        m = SETEXT.match(line)
        if (
            m
            and previous.strip()
            and not ATX.match(previous)
            and not previous.lstrip().startswith(("|", "-", "*", "+", ">"))
            and not re.match(r"^ {0,3}\d+[.)]\s", previous)
        ):
            add(previous.strip())
            previous = ""
            continue
        previous = line
    found.update(HTML_ID.findall(code_free))
    cache[path] = found
    return found


def links(text):
    """(line, shown, destination) of every link outside code."""
    code_free = without_code(text)
    for m in INLINE_LINK.finditer(code_free):
        destination = m.group(3)
        if destination.startswith("<") and destination.endswith(">"):
            destination = destination[1:-1]
        line = code_free.count("\n", 0, m.start()) + 1
        yield line, text[m.start() : m.end()], destination
    for m in REFERENCE_DEF.finditer(code_free):
        destination = m.group(2)
        if destination.startswith("<") and destination.endswith(">"):
            destination = destination[1:-1]
        line = code_free.count("\n", 0, m.start()) + 1
        yield line, text[m.start() : m.end()].strip(), destination


def check(root):
    root = root.resolve()
    broken = []
    checked = 0
    for path in markdown_files(root):
        text = path.read_text(encoding="utf-8", errors="replace")
        shown_path = path.relative_to(root)
        for line, shown, destination in links(text):
            if not destination or SCHEME.match(destination) or destination.startswith("//"):
                continue  # an absolute URL (or an empty link): not ours to check
            checked += 1
            target, _, anchor = destination.partition("#")
            target = unquote(target)
            if not target:
                resolved = path
            elif target.startswith("/"):
                resolved = root / target.lstrip("/")
            else:
                resolved = path.parent / target
            shown = " ".join(shown.split())
            if not resolved.exists():
                broken.append(f"{shown_path}:{line}: broken link {shown}: no file {target}")
                continue
            if not anchor:
                continue
            if resolved.is_dir() or resolved.suffix.lower() != ".md":
                if resolved.is_dir():
                    broken.append(f"{shown_path}:{line}: broken link {shown}: #{anchor} on a directory")
                continue  # a line anchor into source (#L10) and the like: GitHub's, not a heading
            if unquote(anchor) not in anchors(resolved.resolve()):
                where = "in this file" if resolved.resolve() == path.resolve() else f"in {target}"
                broken.append(f"{shown_path}:{line}: broken link {shown}: no heading #{anchor} {where}")
    return checked, broken


def main():
    args = sys.argv[1:]
    if len(args) > 1 or (args and args[0] in ("-h", "--help")):
        print(__doc__.strip())
        return 0 if args and args[0] in ("-h", "--help") else 2
    root = Path(args[0]) if args else Path(__file__).resolve().parent.parent
    checked, broken = check(root)
    for line in broken:
        print(line)
    if broken:
        print(f"{len(broken)} broken of {checked} links checked")
        return 1
    print(f"links ok: {checked} checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
