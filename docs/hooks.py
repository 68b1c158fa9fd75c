"""MkDocs hook: the code's docstrings are written for Sphinx; drop the roles (`:class:`, `:mod:`, ...) that
mkdocstrings leaves before an inline code span, and a paragraph's closing `::` (reST's literal-block marker)."""

import re

ROLE = re.compile(r":(?:py:)?(?:mod|class|func|meth|attr|data|exc|obj|const):(?=<code)")


def on_page_content(html, **kwargs):
    return ROLE.sub("", html).replace("::</p>", ":</p>")
