"""MkDocs hooks (mkdocs.yml: ``hooks``): the site's home page is the repository's README.md, its links rewritten
from the repository's root (``docs/detect.md``) to the docs folder (``detect.md``), so the README and the home page
cannot differ and the strict build checks the README's links too."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_for_site(text: str) -> str:
    """README.md's Markdown with every relative link or image into ``docs/`` made relative to the docs folder."""
    return re.sub(r"\]\(docs/", "](", text)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri == "index.md":
        return readme_for_site(README.read_text(encoding="utf-8"))
    return markdown
