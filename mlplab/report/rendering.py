"""Render report sections to Markdown and to one self-contained HTML page.

Both renderers walk the same :class:`~mlplab.report.document.Section` objects. The HTML page embeds
every image as a ``data:`` URI and carries its own CSS, so the single file can be mailed or opened
anywhere; the Markdown file links the images in the report folder.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from mlplab.report.document import Block, Equations, Figure, KeyValues, Section, Table, Text

_CSS = """
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif;
       max-width: 60rem; margin: 2rem auto; padding: 0 1.5rem; color: #1f2328; line-height: 1.5;
       background: #ffffff; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; margin-top: 2.5rem; }
h3 { margin-top: 1.8rem; }
table { border-collapse: collapse; font-size: .92rem; }
/* a table wider than the column (a phone, the tuning trials) scrolls inside its box, not the
   page; its caption (a figcaption before the box) stays put, wrapped to the column */
.scroll { max-width: 100%; overflow-x: auto; margin: .8rem 0; }
figure.table { margin: .8rem 0; }
figure.table .scroll { margin: 0; }
figure.table figcaption { font-size: .92rem; font-weight: 600; color: inherit;
                          margin: 0 0 .3rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figure.eq img { border: none; }
figcaption { font-size: .9rem; color: #57606a; margin-top: .3rem; }
code, pre { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: .88rem;
            background: #f6f8fa; border-radius: 4px; }
code { padding: .1rem .3rem; }
pre { padding: .6rem; overflow-x: auto; }
.notrun { border-left: 4px solid #bf8700; background: #fff8c5; padding: .5rem .8rem; }
.meta { color: #57606a; font-size: .9rem; }
nav ul { columns: 2; }
nav ul ul { columns: 1; }
nav li { break-inside: avoid; }
"""

_NUMERIC = re.compile(r"^[\s+\-−]?[\d.,]+(e[+\-]?\d+)?\s*%?$|^—$|^n/a$")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


#: the characters :func:`md_literal` escapes: those that would start Markdown markup (``&`` an
#: entity, ``~`` GitHub's strike-through, ``$`` GitHub's maths)
_MD_SPECIAL = r"[\\`*_\[\]()<>#|&~$]"


def _one_line(text: object) -> str:
    """``text`` with its line breaks as spaces: in Markdown one would end the paragraph, the
    heading or the quote it stands in (and a message's next line could start a list)."""
    return " ".join(str(text).splitlines())


def md_literal(text: object) -> str:
    """``text`` (an error message, a path, a class name) escaped so that Markdown, and this
    module's HTML, show it as it is, on one line, rather than read links or emphasis into it."""
    return re.sub(f"({_MD_SPECIAL})", r"\\\1", _one_line(text))


def md_code(text: object) -> str:
    """``text`` (a command, a path) as an inline code span on one line: fenced by more backticks
    than it holds in a row (CommonMark's rule), so that a backtick inside cannot end it. Empty
    text gives an empty string (two backticks would be shown as such)."""
    text = _one_line(text)
    if not text:
        return ""
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    # a space each side, which CommonMark strips, where the text would touch the fence or
    # lose its own spaces to that stripping
    pad = " " if text[:1] == "`" or text[-1:] == "`" or (
        text[:1] == " " and text[-1:] == " " and text.strip()) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


#: a backslash escape (skipped: ``\\``` opens no code span, while the backtick after an escaped
#: backslash does), or an inline code span: a run of backticks up to the next run of that length
_CODE_SPAN = re.compile(r"(\\[\s\S])|(?<!`)(`+)(?!`)(.+?)(?<!`)\2(?!`)")


def _code_html(content: str) -> str:
    if content[:1] == " " and content[-1:] == " " and content.strip():
        content = content[1:-1]  # CommonMark strips one space each side
    return f"<code>{html.escape(content)}</code>"


def _link(m: re.Match) -> str:
    label, href = m.group(1), html.unescape(m.group(2))
    if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", href) and not re.match(r"(?i)https?:|mailto:",
                                                                   href):
        return m.group(0)  # javascript: and the like stay text
    return f'<a href="{html.escape(href)}">{label}</a>'


def _inline_html(text: str) -> str:
    """The inline Markdown subset as HTML: escape first, then code spans, links, bold, italic;
    a backslash-escaped character (:func:`md_literal`) is shown as itself."""
    kept: list[str] = []

    def keep(m: re.Match) -> str:
        kept.append(m.group(1))
        return f"\x00{len(kept) - 1}\x00"

    # code spans first (an escaped backtick opens none), whose backslashes are their own
    out = []
    end = 0
    for m in _CODE_SPAN.finditer(text):
        if m.group(1):  # an escaped character: left to _inline_text
            continue
        out.append(_inline_text(text[end:m.start()], keep))
        out.append(_code_html(m.group(3)))
        end = m.end()
    out.append(_inline_text(text[end:], keep))
    return re.sub("\x00(\\d+)\x00", lambda m: html.escape(kept[int(m.group(1))]),
                  "".join(out))


def _inline_text(part: str, keep: Callable[[re.Match], str]) -> str:
    """Text outside code spans as HTML: escaped characters set aside by ``keep``, then links,
    bold and italic."""
    s = html.escape(re.sub(f"\\\\({_MD_SPECIAL})", keep, part), quote=False)
    s = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", _link, s)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    return re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", s)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _group_order(sections: Sequence[Section]) -> list[tuple[str, list[Section]]]:
    groups: dict[str, list[Section]] = {}
    for s in sections:
        groups.setdefault(s.group, []).append(s)
    return list(groups.items())


# ------------------------------------------------------------------------------------ Markdown
def to_markdown(title: str, intro: Sequence[str], sections: Sequence[Section]) -> str:
    lines = [f"# {md_literal(title)}", ""]
    for para in intro:
        lines += [para, ""]
    for group, secs in _group_order(sections):
        lines += [f"## {group}", ""]
        for s in secs:
            if s.title:
                lines += [f"### {s.title}", ""]
            if s.status != "ok":
                lines += [f"> **Not run:** {md_literal(s.reason)}", ""]
            for b in s.blocks:
                lines += _md_block(b) + [""]
    return "\n".join(lines).rstrip() + "\n"


def _md_block(b: Block) -> list[str]:
    if isinstance(b, Text):
        return [b.text]
    if isinstance(b, Table):
        out = [f"**{b.caption}**", ""] if b.caption else []
        out.append("| " + " | ".join(_md_cell(c) for c in b.columns) + " |")
        out.append("|" + "|".join("---:" if _is_numeric_column(b, i) else "---"
                                  for i in range(len(b.columns))) + "|")
        out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
        return out
    if isinstance(b, Figure):
        return [f"![{b.alt or b.caption}]({b.path})", "", f"*{b.caption}*"]
    if isinstance(b, Equations):
        out = []
        for eq in b.latex:
            out += ["$$", eq, "$$", ""]
        if b.caption:
            out.append(f"*{b.caption}*")
        return out[:-1] if out and out[-1] == "" else out
    if isinstance(b, KeyValues):
        out = [f"**{b.caption}**", ""] if b.caption else []
        out += ["| item | value |", "|---|---|"]
        out += [f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in b.items]
        return out
    raise TypeError(f"unknown report block {type(b).__name__}")


#: a whole cell in Markdown emphasis, as the tuning trials mark their best row: ``**0.9945**``
_EMPHASIS = re.compile(r"^(\*\*|\*)(\S(?:.*\S)?)\1$")


def _is_numeric_column(table: Table, i: int) -> bool:
    """Every non-empty cell of column ``i`` is a number (a percentage, a dash for none), even
    one marked in bold or italic as a whole: such a column is right-aligned."""
    cells = [str(row[i]).strip() for row in table.rows if i < len(row) and str(row[i]).strip()]
    return bool(cells) and all(_NUMERIC.match(_EMPHASIS.sub(r"\2", c)) for c in cells)


# ------------------------------------------------------------------------------------ HTML
def to_html(title: str, intro: Sequence[str], sections: Sequence[Section], root: Path,
            embed: bool = True) -> str:
    """The page; with ``embed`` every image under ``root`` becomes a ``data:`` URI."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    body += [f'<p class="meta">{_inline_html(p)}</p>' for p in intro]
    groups = _group_order(sections)
    body.append("<nav><strong>Contents</strong><ul>")
    for group, secs in groups:
        # a group's titled sections (Q3's four) listed under it: the longest part of the page
        # was reachable from the contents only by its top
        subs = "".join(f'<li><a href="#{_slug(s.key)}">{html.escape(s.title)}</a></li>'
                       for s in secs if s.title)
        body.append(f'<li><a href="#{_slug(group)}">{html.escape(group)}</a>'
                    + (f"<ul>{subs}</ul>" if subs else "") + "</li>")
    body.append("</ul></nav>")
    for group, secs in groups:
        body.append(f'<h2 id="{_slug(group)}">{html.escape(group)}</h2>')
        for s in secs:
            if s.title:
                body.append(f'<h3 id="{_slug(s.key)}">{html.escape(s.title)}</h3>')
            if s.status != "ok":
                body.append(f'<p class="notrun"><strong>Not run:</strong> '
                            f'{html.escape(s.reason)}</p>')
            body += [_html_block(b, root, embed) for b in s.blocks]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _img_src(path: str, root: Path, embed: bool) -> str:
    if not embed:
        return html.escape(path)
    file = root / path
    mime = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    return f"data:{mime};base64," + base64.b64encode(file.read_bytes()).decode("ascii")


def _html_block(b: Block, root: Path, embed: bool) -> str:
    if isinstance(b, Text):
        return f"<p>{_inline_html(b.text)}</p>"
    if isinstance(b, Table):
        out = ["<thead><tr>" + "".join(f"<th>{_inline_html(c)}</th>" for c in b.columns)
               + "</tr></thead><tbody>"]
        numeric = [_is_numeric_column(b, i) for i in range(len(b.columns))]
        for row in b.rows:
            cells = "".join(
                f'<td{" class=num" if i < len(numeric) and numeric[i] else ""}>'
                f"{_inline_html(str(c))}</td>" for i, c in enumerate(row))
            out.append(f"<tr>{cells}</tr>")
        out.append("</tbody>")
        return _html_table(out, b.caption)
    if isinstance(b, Figure):
        return (f'<figure><img src="{_img_src(b.path, root, embed)}" '
                f'alt="{html.escape(b.alt or b.caption)}">'
                f"<figcaption>{_inline_html(b.caption)}</figcaption></figure>")
    if isinstance(b, Equations):
        latex = html.escape("\n".join(b.latex))
        img = (f'<img src="{_img_src(b.image, root, embed)}" alt="{latex}">' if b.image
               else f"<pre>{latex}</pre>")
        cap = f"<figcaption>{_inline_html(b.caption)}</figcaption>" if b.caption else ""
        return (f'<figure class="eq">{img}{cap}</figure>'
                f"<details><summary>LaTeX source</summary><pre>{latex}</pre></details>")
    if isinstance(b, KeyValues):
        # a header row, as the Markdown table has (every table of the page has one), and each
        # key the header of its row
        return _html_table(["<thead><tr><th>item</th><th>value</th></tr></thead><tbody>"]
                           + [f'<tr><th scope="row">{_inline_html(k)}</th>'
                              f"<td>{_inline_html(v)}</td></tr>" for k, v in b.items]
                           + ["</tbody>"], b.caption)
    raise TypeError(f"unknown report block {type(b).__name__}")


def _html_table(rows: list[str], caption: str) -> str:
    """A table in a box that scrolls it sideways when it is wider than the column; a caption
    goes before the box, as the figcaption of a figure holding both, so that it stays in view
    and wraps to the column while the cells scroll (a ``<caption>`` is part of the table and
    scrolled with it). The HTML standard asks for a figcaption rather than a caption when a
    table is a figure's only content."""
    box = '<div class="scroll">\n<table>\n' + "\n".join(rows) + "\n</table>\n</div>"
    if not caption:
        return box
    return (f'<figure class="table">\n<figcaption>{_inline_html(caption)}</figcaption>\n'
            f"{box}\n</figure>")
