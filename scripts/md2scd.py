#!/usr/bin/python3
"""Markdown (the subset docs/*.md use) to the body of an scdoc page, so that
vm.json(5) is made from docs/VM-JSON.md and cannot drift from it.

  md2scd.py FILE.md > body.scd

Headings go one level up (## -> a section, ### -> a subsection), the
document's own title (#) is dropped (the page's header names it), tables
become definition lists (first column the term, the others its text),
`code` and **bold** become bold, links keep their text, ```fences``` stay
literal."""
import re
import sys


def escape(s):
    return re.sub(r"([*_\\])", r"\\\1", s)


def inline(s):
    out, pos = [], 0
    for m in re.finditer(r"`([^`]+)`", s):
        out.append(prose(s[pos:m.start()]))
        out.append("*" + escape(m.group(1)) + "*")
        pos = m.end()
    out.append(prose(s[pos:]))
    return "".join(out)


def prose(s):
    s = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", s)
    parts = re.split(r"\*\*(.+?)\*\*", s)
    return "".join("*" + escape(p) + "*" if i % 2 else escape(p) for i, p in enumerate(parts))


def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def table(rows):
    head, body = cells(rows[0]), [cells(r) for r in rows[2:]]
    out = []
    for row in body:
        out.append(inline(row[0]))
        details = [f"{head[i].capitalize()}: {row[i]}." for i in range(1, len(row) - 1)]
        out.append("\t" + inline(" ".join(details + [row[-1]])))
        out.append("")
    return out


def item_start(line):
    """A list item's marker in scdoc ("- " or ". "), and its text."""
    m = re.match(r"^(\*|-|\d+\.) (.*)", line)
    if not m:
        return None
    return ("- " if m.group(1) in "*-" else ". "), m.group(2)


def convert(lines):
    """Blocks: a fence, a heading, a table, a list item or a paragraph; the
    lines of an item or a paragraph are joined, so **bold** may span them."""
    out, i, para = [], 0, []

    def flush():
        if para:
            out.append(para[0] + inline(" ".join(para[1:])))
            para.clear()

    while i < len(lines):
        line = lines[i].rstrip("\n")
        i += 1
        if line.startswith("```"):
            flush()
            out.append("```")
            while i < len(lines) and not lines[i].startswith("```"):
                out.append(lines[i].rstrip("\n"))
                i += 1
            out.append("```")
            i += 1
        elif line.startswith("#"):
            flush()
            level, title = line.split(" ", 1)
            if len(level) == 2:
                out.append("# " + title.replace("`", "").upper())
            elif len(level) == 3:   # scdoc shows headings verbatim: no markup
                out.append("## " + title.replace("`", ""))
        elif line.startswith("|"):
            flush()
            rows = [line]
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            out.extend(table(rows))
        elif not line.strip():
            flush()
            out.append("")
        elif item_start(line):
            flush()
            para.extend(item_start(line))
        else:
            if not para:
                para.append("")
            para.append(line.strip())
    flush()
    return out


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print("\n".join(convert(f.readlines())))
