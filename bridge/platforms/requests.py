"""What the platforms' request models share: "exactly one of these fields" (V7's image or video, a Labelbox
part's text or image), checked on every request and declared in the OpenAPI schema."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, GetJsonSchemaHandler, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema


class OneOf(BaseModel):
    """A request model in which exactly one of `one_of`'s fields is given (at least one, when `several`)."""

    one_of: ClassVar[tuple[str, ...]] = ()
    several: ClassVar[bool] = False
    """Whether more than one of them may be given."""

    @model_validator(mode="after")
    def _one_of(self) -> OneOf:
        given = [name for name in self.one_of if getattr(self, name) not in (None, "")]
        if not given or (len(given) > 1 and not self.several):
            names = " and ".join(f"`{name}`" for name in self.one_of)
            wanted = "at least one" if self.several else "exactly one"
            raise ValueError(f"{wanted} of {names} is needed" + (f", got {len(given)}" if given else ""))
        return self

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        if cls.one_of:
            target = handler.resolve_ref_schema(schema)
            target["anyOf" if cls.several else "oneOf"] = [{"required": [name]} for name in cls.one_of]
        return schema

