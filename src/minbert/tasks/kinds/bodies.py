"""What `POST /predict/{task}` takes (TaskKind.serve_body): pydantic models, so that a wrong body is a 422 naming the
field. A kind's module may declare its own beside its kind; these are the ones more than one kind can take."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TaskRows(BaseModel):
    """Sentence rows: `texts` for a single-sentence task, `pairs` for a pair task (TaskKind.serve_rows says which)."""

    texts: list[str] | None = Field(None, description="sentences, for a single-sentence task")
    pairs: list[tuple[str, str]] | None = Field(None, description="pairs of sentences, for a pair task")


class TextBody(BaseModel):
    """Raw text, one (`text`) or several (`texts`), for a kind that splits text itself (tagging); any other key is
    refused by name."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, description="one text", examples=["Alice moved to Paris in May ."])
    texts: list[str] | None = Field(None, description="several texts, answered in order")

    @model_validator(mode="after")
    def one_of_text_or_texts(self) -> TextBody:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give `text` (one text) or `texts` (a list of texts), not "
                             + ("both" if self.text is not None else "neither"))
        return self

    def rows(self) -> list[tuple[str, ...]]:
        return [(self.text,)] if self.text is not None else [(text,) for text in self.texts]
