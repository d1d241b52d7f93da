"""Text classifier from word lists: the language (radio), the topics (checklist) and their keywords (free text).

The language is the one whose common function words make up most of the text's words; the confidence is its
share of all function words found. A topic is chosen when at least `min_hits` of its English keywords occur
(a plural "s" is ignored); the checklist's confidence is the share of keyword hits its chosen topics hold.
`keywords` lists the keywords found, in order of first appearance, for a labeller to check at a glance.
"""

from __future__ import annotations

import re
from collections import Counter

from bridge import Classification, ClassSpec, Context, ModelSpec, Prediction

LANGUAGES: dict[str, frozenset[str]] = {
    "english": frozenset("the and of to in is that it for was on are with as be this by at from have not or "
                         "but an they which you were has their will".split()),
    "french": frozenset("le la les de des du et est un une que qui dans pour pas sur au aux ce cette il elle "
                        "sont avec par nous vous ne".split()),
    "german": frozenset("der die das und ist nicht ein eine zu den von mit sich des auf für im dem auch es "
                        "wird sind nach bei aus wir".split()),
    "spanish": frozenset("el la los las de y que en un una es por con para del al se lo como más pero sus "
                         "está son fue muy".split()),
}

TOPICS: dict[str, frozenset[str]] = {
    "sports": frozenset("match game team goal league season player coach score tournament championship win "
                        "defeat striker referee stadium olympic medal race cup final".split()),
    "finance": frozenset("market stock share investor bank profit revenue earning dividend inflation interest "
                         "rate bond price trading fund quarter economy currency loan".split()),
    "technology": frozenset("software computer data algorithm model chip processor internet app cloud "
                            "network device code developer ai robot smartphone server digital".split()),
    "health": frozenset("patient doctor hospital disease vaccine treatment symptom health medicine virus "
                        "clinical therapy nurse diagnosis infection drug surgery".split()),
    "politics": frozenset("election government minister parliament vote president policy party senate law "
                          "campaign democracy congress candidate coalition".split()),
}

_WORD = re.compile(r"[^\W\d_]+")


class TopicClassifier:
    spec = ModelSpec(input="text", classes=[
        ClassSpec(name="language", kind="radio", options=tuple(LANGUAGES), description="The text's language."),
        ClassSpec(name="topics", kind="checklist", options=tuple(TOPICS), description="What the text is about."),
        ClassSpec(name="keywords", kind="text", description="The topic keywords found, comma-separated."),
    ])

    def __init__(self, min_hits: int = 2) -> None:
        self.min_hits = min_hits

    def predict(self, text: str, context: Context) -> list[Prediction]:
        words = [w.lower() for w in _WORD.findall(text)]
        found = []
        votes = Counter({lang: sum(w in common for w in words) for lang, common in LANGUAGES.items()})
        (language, best), = votes.most_common(1)
        if best:
            found.append(Prediction("language", Classification(language), best / sum(votes.values())))
        keywords = [w for w in (_singular(w) for w in words) if any(w in kw for kw in TOPICS.values())]
        hits = Counter(topic for w in keywords for topic, kw in TOPICS.items() if w in kw)
        min_hits = int(context.params.get("min_hits", self.min_hits))
        topics = tuple(topic for topic in TOPICS if hits[topic] >= min_hits)
        if topics:
            share = sum(hits[t] for t in topics) / sum(hits.values())
            found.append(Prediction("topics", Classification(topics), share))
        if keywords:
            found.append(Prediction("keywords", Classification(", ".join(dict.fromkeys(keywords)))))
        return found


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word
