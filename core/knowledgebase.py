"""The knowledgebase: articles staff keep, and the ones suggested for a new ticket.

`suggest_articles` ranks articles by the words they share with the ticket's
subject and body (title words weigh most, then tags, then body); the caller
puts the suggestions in the acknowledgement it sends.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from core.errors import NotFound, UsageError
from core.model import KbArticle
from core.ports import UnitOfWork

WORD = re.compile(r"[^\W_]{3,}")
STOPWORDS = frozenset(
    "the and for you your with this that have has had from are was were not but can cannot "
    "how what when where which who will would there their they them about into been our out "
    "any all its get got just also please thanks thank hello dear regards".split()
)
TITLE_WEIGHT, TAG_WEIGHT, BODY_WEIGHT = 3, 2, 1


def add_article(uow: UnitOfWork, title: str, body: str, tags: Sequence[str] = ()) -> KbArticle:
    """Store an article; tags are kept lower-case, comma-separated, without duplicates."""
    if not title.strip() or not body.strip():
        raise UsageError("an article needs a title and a body")
    clean = dict.fromkeys(t.strip().lower() for t in tags if t.strip())
    if any("," in tag for tag in clean):
        raise UsageError("a tag cannot contain a comma")
    article = KbArticle(title=title.strip(), body=body, tags=",".join(clean))
    uow.add(article)
    uow.flush()
    return article


def remove_article(uow: UnitOfWork, article_id: int) -> KbArticle:
    """Delete an article; NotFound when there is none with that id."""
    article = uow.kb_article(article_id)
    if article is None:
        raise NotFound(f"no knowledgebase article {article_id}")
    uow.delete(article)
    return article


def article_tags(article: KbArticle) -> list[str]:
    return [t for t in article.tags.split(",") if t]


def suggest_articles(uow: UnitOfWork, subject: str, body: str, limit: int = 3) -> list[KbArticle]:
    """The articles most related to a new ticket's subject and body, best first."""
    return rank_articles(uow.kb_articles(), subject, body, limit)


def rank_articles(
    articles: Iterable[KbArticle], subject: str, body: str, limit: int = 3
) -> list[KbArticle]:
    """Articles sharing at least one word with the text, by weighted overlap, then by id."""
    wanted = words(f"{subject} {body}")
    scored = [(relevance(a, wanted), a) for a in articles]
    ranked = sorted((s for s in scored if s[0] > 0), key=lambda s: (-s[0], s[1].id or 0))
    return [article for _, article in ranked[:limit]]


def relevance(article: KbArticle, wanted: frozenset[str]) -> int:
    return (
        TITLE_WEIGHT * len(wanted & words(article.title))
        + TAG_WEIGHT * len(wanted & words(" ".join(article_tags(article))))
        + BODY_WEIGHT * len(wanted & words(article.body))
    )


def words(text: str) -> frozenset[str]:
    """The distinct lower-case words of three letters or more, minus common ones."""
    return frozenset(w for w in WORD.findall(text.lower()) if w not in STOPWORDS)
